package ipmi

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/corral-cloud/corral/baremetal"
)

// presencePacket is an IPMI 1.5 session-less Get Channel Authentication
// Capabilities request (channel "this one", IPMI 2.0 data, privilege
// admin) in an RMCP datagram: what ipmitool sends first for every lanplus
// session. Any BMC that would accept a session answers it without
// credentials.
var presencePacket = []byte{
	0x06, 0x00, 0xff, 0x07, // RMCP: version 6, reserved, no ack, class IPMI
	0x00, 0, 0, 0, 0, 0, 0, 0, 0, // auth type none, sequence 0, session 0
	0x09,             // message length
	0x20, 0x18, 0xc8, // responder BMC, netFn App, checksum
	0x81, 0x00, 0x38, // requester, sequence, Get Channel Authentication Capabilities
	0x8e, 0x04, // channel E (this one) + IPMI 2.0 extended data, privilege admin
	0xb5, // checksum
}

// probe sends the presence packet twice, waiting timeout for an answer
// each time. No answer means the BMC is unreachable.
func probe(ctx context.Context, addr string, timeout time.Duration) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("%v: %w", err, baremetal.ErrUnreachable)
	}
	defer conn.Close()
	buf := make([]byte, 512)
	for range 2 {
		if ctx.Err() != nil {
			return fmt.Errorf("%v: %w", ctx.Err(), baremetal.ErrUnreachable)
		}
		if _, err := conn.Write(presencePacket); err != nil {
			continue // e.g. ICMP port unreachable from the last try
		}
		deadline := time.Now().Add(timeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err == nil && n >= 4 && buf[0] == 0x06 {
			return nil
		}
	}
	return fmt.Errorf("no answer to an RMCP presence probe within 2 × %s: %w", timeout, baremetal.ErrUnreachable)
}
