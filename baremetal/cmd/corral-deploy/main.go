// Command corral-deploy is the deploy agent of Corral's deploy ramdisk. The
// ramdisk's /init runs it once networking is up when the kernel command
// line carries corral.mode=. See package baremetal/agent.
//
// Build it static: CGO_ENABLED=0 go build ./baremetal/cmd/corral-deploy
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/corral-cloud/corral/baremetal/agent"
)

func main() {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-deploy:", err)
		os.Exit(1)
	}
	o, err := agent.ParseCmdline(string(cmdline))
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-deploy:", err)
		os.Exit(1)
	}
	console := os.Stderr
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		console = f
	}
	a := &agent.Agent{Orders: o, Log: console}
	if err := a.Run(context.Background()); err != nil {
		fmt.Fprintln(console, "corral-deploy: could not report:", err)
		os.Exit(1)
	}
}
