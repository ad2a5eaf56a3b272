package main

import (
	"context"
	"fmt"

	"github.com/skip2/go-qrcode"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// cmdInvite prints this node's invitation: the one string a friend
// gives `p2pmsg contacts add`, and on a terminal its QR code.
func cmdInvite(e *env, args []string) error {
	fs := e.flags("invite")
	if _, err := e.parse(fs, args, 0, "p2pmsg invite [--json]"); err != nil {
		return err
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		inv, err := c.Invite(ctx)
		if err != nil {
			return err
		}
		return e.output(inv, func() {
			if e.width() > 0 {
				printQR(e, inv.Invitation)
			}
			fmt.Fprintln(e.stdout, inv.Invitation)
			if e.width() > 0 {
				fmt.Fprintln(e.stdout, "\nGive this to a friend; they add you with: p2pmsg contacts add 'THE LINE ABOVE'")
			}
		})
	})
}

// printQR prints s as a QR code of half-height blocks.
func printQR(e *env, s string) {
	if q, err := qrcode.New(s, qrcode.Low); err == nil {
		fmt.Fprint(e.stdout, q.ToSmallString(false))
	}
}
