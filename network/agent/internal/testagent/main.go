// Command testagent runs only the network reconcile loop of corral-agent,
// with a given token and host ID, so that the integration tests can kill
// it with SIGKILL and start it again. It prints one line per reconcile:
//
//	RECONCILED version=V flows=N added=A deleted=D err=E
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/network/agent"
	"github.com/corral-cloud/corral/network/ovs"
)

func main() {
	endpoint := flag.String("endpoint", "", "corrald's URL")
	token := flag.String("token", "", "agent token")
	host := flag.String("host", "", "host ID")
	bridge := flag.String("bridge", "", "integration bridge")
	tunnelIP := flag.String("tunnel-ip", "", "VXLAN endpoint address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &agent.Reconciler{
		Source: client.New(*endpoint, *token, nil), Switch: ovs.New(*bridge), HostID: *host, TunnelIP: *tunnelIP,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		OnReconcile: func(res agent.Result) {
			fmt.Printf("RECONCILED version=%s flows=%d added=%d deleted=%d err=%v\n", res.Version, res.Flows, res.Added, res.Deleted, res.Err)
		},
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(1)
	}
}
