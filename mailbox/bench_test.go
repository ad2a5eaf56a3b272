package mailbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
)

// BenchmarkDeposits: deposits a second into one mailbox over the deposit
// protocol, from 4 senders on their own hosts, each pipelining runs of
// 500 deposits on a stream (token-authorised, 1 KiB seals: the smallest
// padding step), through authorisation, group commit (synchronous=FULL)
// and the answers. Everything on loopback, on this machine.
//
//	go test ./mailbox -run '^$' -bench Deposits -benchtime 20000x
func BenchmarkDeposits(b *testing.B) {
	l := newLab(b, ServerConfig{Quota: 1 << 30, QuotaBytes: 1 << 40})
	owner := newHost(b, nil)
	l.connect(b, owner)
	inbox, err := l.server.Allow(owner.ID(), 0, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	key := [KeySize]byte{5}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Call(ctx, owner, l.m.ID(), SetPolicy{Policy{TTL: 3600, TokenKey: key}}); err != nil {
		b.Fatal(err)
	}
	token := Token(&key, inbox, 1)
	const senders, run = 4, 500
	hosts := make([]host.Host, senders)
	for i := range hosts {
		hosts[i] = newHost(b, nil)
		l.connect(b, hosts[i])
	}
	per := (b.N + senders - 1) / senders
	errs := make(chan error, senders)
	b.ResetTimer()
	for s := range senders {
		go func() {
			h := hosts[s]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			for done := 0; done < per; {
				n := min(run, per-done)
				ds := make([]Deposit, n)
				for i := range ds {
					seal := make([]byte, 1<<10)
					binary.BigEndian.PutUint64(seal, uint64(s)<<32|uint64(done+i))
					ds[i] = Deposit{Inbox: inbox, Auth: AuthToken, Index: 1, Token: token, TTL: 3600, Seal: seal}
				}
				res, err := Deposits(ctx, h, l.m.ID(), ds)
				if err == nil {
					for _, r := range res {
						if r != ResultStored {
							err = fmt.Errorf("a deposit's result: %d", r)
							break
						}
					}
				}
				if err != nil {
					errs <- err
					return
				}
				done += n
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(per*senders)/b.Elapsed().Seconds(), "deposits/s")
}
