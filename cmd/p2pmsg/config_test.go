package main

import (
	"bytes"
	"testing"
	"time"
)

// config.example.toml is valid, complete (every key known) and states the
// defaults the node really uses.
func TestExampleConfig(t *testing.T) {
	var errs bytes.Buffer
	e := &env{stderr: &errs, configFile: "../../config.example.toml", data: t.TempDir()}
	fc, err := e.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]time.Duration{
		"republish_interval": {fc.RepublishInterval.Duration, 12 * time.Hour},
		"retry_min":          {fc.RetryMin.Duration, time.Second},
		"retry_max":          {fc.RetryMax.Duration, 5 * time.Minute},
		"lookup_timeout":     {fc.LookupTimeout.Duration, 10 * time.Second},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("%s = %v in the example, the node's default is %v", k, v[0], v[1])
		}
	}
	if fc.ConnLow != 64 || fc.ConnHigh != 256 || fc.MDNS == nil || !*fc.MDNS || fc.DHTMode != "auto" || len(fc.Listen) != 0 || len(fc.Bootstrap) != 0 ||
		fc.PortMap == nil || !*fc.PortMap || len(fc.Relays) != 0 || fc.Relay || fc.Reachability != "auto" {
		t.Errorf("example config differs from the defaults: %+v", fc)
	}
	if _, err := e.nodeConfig(fc); err != nil {
		t.Fatal(err)
	}
}
