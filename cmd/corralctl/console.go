package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// consoleCommand is "server console ID|NAME [--log] [--tail N]".
func (a *app) consoleCommand(k *kind[types.Server]) *cobra.Command {
	var logOnly, stdin bool
	var tail int
	var sends []string
	cmd := &cobra.Command{
		Use:   "console ID|NAME [--log] [--tail N] [--send LINE]... [--stdin]",
		Short: "Show a VM's serial console: its recent output, then what follows; type into it",
		Long: `Show a VM's serial console as its host's agent uploads it to corrald (no
connection to the host is needed). Without --log it prints the last --tail
lines and then follows new output until interrupted (Ctrl-C); with --log it
prints the last lines and exits. Only whole lines are printed while
following; --log also prints the line being written (a shell prompt, say).

--send LINE types LINE and a newline into the console first (repeat it for
several lines); --stdin types every line read from standard input while
following. Input goes through corrald to the host's agent (within a second
or so); it is line by line, not a raw terminal, and input not taken within
a minute is dropped.

corrald keeps the newest 64 KiB of each console. A bare-metal server's
console is its node's (IPMI serial-over-LAN) and is not served: the answer
is console_unavailable.`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			if tail < 1 || tail > types.MaxConsoleLines {
				return usagef("--tail %d: must be from 1 to %d", tail, types.MaxConsoleLines)
			}
			if logOnly && stdin {
				return usagef("--stdin needs follow mode: drop --log")
			}
			id, err := resolveID(ctx, a, k, args[0])
			if err != nil {
				return err
			}
			for _, line := range sends {
				if err := a.api.c.SendConsoleInput(ctx, id, line+"\n"); err != nil {
					return err
				}
			}
			if stdin {
				go a.typeStdin(ctx, id)
			}
			var c types.Console
			if err := a.api.retry(ctx, func() (err error) { c, err = a.api.c.ConsoleTail(ctx, id, tail); return err }); err != nil {
				return err
			}
			if logOnly && a.output == formatJSON {
				raw, err := json.Marshal(c)
				if err != nil {
					return err
				}
				return writeJSON(a.stdout, raw)
			}
			if c.Truncated {
				a.notef("older output is not shown (--tail %d, and corrald keeps the newest 64 KiB)", tail)
			}
			for _, l := range c.Lines {
				fmt.Fprintln(a.stdout, l)
			}
			if logOnly {
				if c.Partial != "" {
					fmt.Fprintln(a.stdout, c.Partial)
				}
				return nil
			}
			return a.followConsole(ctx, id, c.Next)
		}),
	}
	cmd.Flags().BoolVar(&logOnly, "log", false, "print the recent output and exit (read-only log mode)")
	cmd.Flags().IntVar(&tail, "tail", types.DefaultConsoleTail, "how many of the last lines to print first")
	cmd.Flags().StringArrayVar(&sends, "send", nil, "type this line (and a newline) into the console first; repeatable")
	cmd.Flags().BoolVar(&stdin, "stdin", false, "type the lines read from standard input into the console while following")
	return cmd
}

// typeStdin types each line of standard input into the console, until
// its end or ctx's. A refused line is reported and the rest still sent.
func (a *app) typeStdin(ctx context.Context, id string) {
	sc := bufio.NewScanner(a.stdin)
	sc.Buffer(make([]byte, types.MaxConsoleInput), types.MaxConsoleInput)
	for sc.Scan() && ctx.Err() == nil {
		if err := a.api.c.SendConsoleInput(ctx, id, sc.Text()+"\n"); err != nil && ctx.Err() == nil {
			printError(a.stderr, err)
		}
	}
}

// followConsole prints the console's lines after the cursor as they come,
// until ctx ends (an interrupt ends it without an error).
func (a *app) followConsole(ctx context.Context, id string, next int64) error {
	// Each long poll must answer within --timeout.
	wait := 25 * time.Second
	if a.timeout > 0 && a.timeout-5*time.Second < wait {
		wait = max(time.Second, a.timeout/2)
	}
	pause := time.Second
	for ctx.Err() == nil {
		c, err := a.api.c.ConsoleFollow(ctx, id, next, wait)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !retryable(err) {
				return err
			}
			a.notef("console: %v; retrying in %s", err, pause)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
			pause = min(pause*2, 30*time.Second)
			continue
		}
		pause = time.Second
		if c.Truncated {
			a.notef("console output was lost while following (more than corrald keeps arrived at once)")
		}
		for _, l := range c.Lines {
			fmt.Fprintln(a.stdout, l)
		}
		next = c.Next
	}
	return nil
}

// reportCommand groups the reports.
func (a *app) reportCommand() *cobra.Command {
	var window string
	var cpuBelow, memBelow, headroom float64
	var minHours int
	rs := &cobra.Command{
		Use:   "rightsizing [--window 7d] [--cpu-p95-below 10] [--mem-below 30]",
		Short: "List servers whose measured usage stays far below their flavor, with a smaller flavor",
		Long: `List the VMs whose measured usage over the window stays below the thresholds
(p95 of the hourly mean CPU below --cpu-p95-below percent of the flavor's
vCPUs, p95 of the hourly peak memory below --mem-below percent of its RAM),
each with the smallest flavor that still fits that usage times --headroom
(same disk or larger, same hugepages), and what the suggestions would free
per rack. Servers with fewer than --min-hours hours of samples are not
judged. An admin sees every project; a project's token its own servers.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			fl := cmd.Flags()
			if fl.Changed("window") {
				q.Set("window", window)
			}
			for flag, param := range map[string]string{"cpu-p95-below": "cpu_p95_below", "mem-below": "mem_below", "headroom": "headroom"} {
				if fl.Changed(flag) {
					v, _ := fl.GetFloat64(flag)
					q.Set(param, strconv.FormatFloat(v, 'f', -1, 64))
				}
			}
			if fl.Changed("min-hours") {
				q.Set("min_hours", strconv.Itoa(minHours))
			}
			var rep types.RightsizingReport
			if err := a.api.retry(ctx, func() (err error) { rep, err = a.api.c.Rightsizing(ctx, q); return err }); err != nil {
				return err
			}
			if a.output == formatJSON {
				raw, err := json.Marshal(rep)
				if err != nil {
					return err
				}
				return writeJSON(a.stdout, raw)
			}
			return writeRightsizing(a, rep)
		}),
	}
	fl := rs.Flags()
	fl.StringVar(&window, "window", "7d", "period to judge, e.g. 7d or 36h (at most 8d)")
	fl.Float64Var(&cpuBelow, "cpu-p95-below", 10, "CPU threshold, percent of the flavor's vCPUs")
	fl.Float64Var(&memBelow, "mem-below", 30, "memory threshold, percent of the flavor's RAM")
	fl.IntVar(&minHours, "min-hours", 24, "hours of samples a server needs to be judged")
	fl.Float64Var(&headroom, "headroom", 1.5, "factor on measured usage when choosing a flavor")
	return group("report", "Reports on the fleet", rs)
}

// writeRightsizing prints the report as two tables: servers, then racks.
func writeRightsizing(a *app, rep types.RightsizingReport) error {
	fmt.Fprintf(a.stdout, "window %s: p95 CPU below %g %%, memory below %g %%, at least %d hours of samples, headroom %g\n\n",
		rep.Window, rep.CPUP95Below, rep.MemBelow, rep.MinHours, rep.Headroom)
	zones := map[string]string{}
	for _, r := range rep.Racks {
		zones[r.ZoneID] = r.Zone
	}
	rows := make([][]string, 0, len(rep.Servers))
	for _, s := range rep.Servers {
		suggested, frees := "", ""
		if s.Suggested != nil {
			suggested = s.Suggested.Name
			frees = fmt.Sprintf("%d vCPU, %d MiB", s.FreesVCPUs, s.FreesRAMMiB)
		} else {
			frees = s.Reason
		}
		rack := zones[s.ZoneID]
		if rack == "" {
			rack = s.ZoneID
		}
		rows = append(rows, []string{s.ServerID, s.Name, s.ProjectID, rack, s.Flavor, strconv.Itoa(s.Hours),
			fmt.Sprintf("%.1f", s.CPUP95), fmt.Sprintf("%.1f", s.MemP95), suggested, frees})
	}
	if err := writeTable(a.stdout, []string{"ID", "NAME", "PROJECT", "RACK", "FLAVOR", "HOURS", "CPU-P95-%", "MEM-P95-%",
		"SUGGESTED", "FREES"}, rows); err != nil {
		return err
	}
	racks := make([][]string, 0, len(rep.Racks))
	for _, r := range rep.Racks {
		racks = append(racks, []string{r.Zone, strconv.Itoa(r.Servers), strconv.FormatInt(r.FreesVCPUs, 10), strconv.FormatInt(r.FreesRAMMiB, 10)})
	}
	fmt.Fprintln(a.stdout)
	return writeTable(a.stdout, []string{"RACK", "SERVERS", "FREES-VCPUS", "FREES-RAM-MIB"}, racks)
}
