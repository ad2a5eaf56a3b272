package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The coordinator and its workers talk over the worker's stdin and stdout:
// one JSON request a line, one JSON reply a line, one request at a time
// per worker. Nothing else may write to a worker's stdout (its logs go to
// stderr).

// Request operations.
const (
	opStart   = "start"   // create and start the Nodes, all at once
	opPublish = "publish" // every node publishes its bundle again
	opStatus  = "status"  // every node's publication and connections
	opContact = "contact" // one first contact: node Sender writes to Target
	opStats   = "stats"   // the process's memory, fds and CPU
	opStop    = "stop"    // close every node; the worker then exits
	opHeap    = "heap"    // a heap profile into Path (profile.go)
)

type request struct {
	Op string `json:"op"`

	// opStart.
	Nodes []nodeSpec `json:"nodes,omitempty"`

	// opPublish: how many nodes publish at once.
	Parallel int `json:"parallel,omitempty"`

	// opContact.
	Sender int    `json:"sender,omitempty"` // the sender's index in this worker
	Target string `json:"target,omitempty"` // the target's peer ID
	// KnowOnlyID: the sender forgets the target's addresses and drops
	// any connection to it before it writes, so that it finds it
	// through the DHT alone.
	KnowOnlyID bool `json:"know_only_id,omitempty"`

	// opHeap.
	Path string `json:"path,omitempty"`
}

// nodeSpec is what differs between the nodes of a worker.
type nodeSpec struct {
	Boot              []string `json:"boot,omitempty"` // BootstrapPeers: multiaddrs with /p2p/ID
	ConnLow, ConnHigh int      `json:",omitempty"`     // 0: the worker's -conn-low, -conn-high
}

type reply struct {
	Err string `json:"err,omitempty"`

	Started   []started     `json:"started,omitempty"`   // opStart
	Published []published   `json:"published,omitempty"` // opPublish
	Status    []nodeStatus  `json:"status,omitempty"`    // opStatus
	Contact   *contactTrial `json:"contact,omitempty"`   // opContact
	Stats     *procStats    `json:"stats,omitempty"`     // opStats
}

// started is one node of an opStart.
type started struct {
	ID     string   `json:"id"`
	Addrs  []string `json:"addrs"`
	NewNS  int64    `json:"new_ns"`  // node.New: the store, the identity, the first prekeys
	JoinNS int64    `json:"join_ns"` // node.Start: the host, the bootstrap, the routing table's refresh
	Err    string   `json:"err,omitempty"`
}

// published is one node's publication in an opPublish.
type published struct {
	NS       int64  `json:"ns"`
	Replicas int    `json:"replicas"`
	Err      string `json:"err,omitempty"`
}

type nodeStatus struct {
	Published bool `json:"published"`
	Replicas  int  `json:"replicas"`
	Conns     int  `json:"conns"`
	RT        int  `json:"rt"`
}

// contactTrial is one first contact, seen from its sender.
type contactTrial struct {
	ConnectedBefore bool   `json:"connected_before"` // before KnowOnlyID dropped it
	SendNS          int64  `json:"send_ns"`          // Send returned: the target found, its bundle fetched, the message queued
	DeliveredNS     int64  `json:"delivered_ns"`     // the "delivered" state event
	State           string `json:"state"`            // the last state seen
	// Waited: why the message was queued without going at once (no
	// session yet: no bundle found), when it was.
	Waited string `json:"waited,omitempty"`
	Err    string `json:"err,omitempty"`
}

// procStats is a worker process's footprint.
type procStats struct {
	Nodes      int   `json:"nodes"`
	RSS        int64 `json:"rss"`      // VmRSS, after a GC and FreeOSMemory
	HWM        int64 `json:"hwm"`      // VmHWM: the peak RSS
	BaseRSS    int64 `json:"base_rss"` // VmRSS before the first node
	HeapInuse  int64 `json:"heap_inuse"`
	HeapAlloc  int64 `json:"heap_alloc"`
	GoSys      int64 `json:"go_sys"` // what the Go runtime got from the OS
	FDs        int   `json:"fds"`
	BaseFDs    int   `json:"base_fds"`
	FDLimit    int   `json:"fd_limit"`
	Goroutines int   `json:"goroutines"`
	Threads    int   `json:"threads"`
}

// lineConn reads and writes JSON lines.
type lineConn struct {
	r *bufio.Reader
	w io.Writer
}

func newLineConn(r io.Reader, w io.Writer) *lineConn {
	return &lineConn{r: bufio.NewReaderSize(r, 1<<20), w: w}
}

func (c *lineConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.w.Write(append(b, '\n'))
	return err
}

// read decodes the next line into v; io.EOF when the other side has gone.
func (c *lineConn) read(v any) error {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return io.EOF
		}
		return fmt.Errorf("reading a line: %w", err)
	}
	return json.Unmarshal(line, v)
}
