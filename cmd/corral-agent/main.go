// Command corral-agent runs on every compute host: it registers the host
// with corrald and sends heartbeats with the host's measured usage.
//
//	corral-agent --endpoint https://corral:8440 \
//	    --registration-token-file /etc/corral/registrar-token \
//	    --region dc1 --zone rack1 --aggregates general
//
// It stops cleanly on SIGTERM or SIGINT and never exits because corrald is
// unreachable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/buildinfo"
)

// agentVersion is what the agent reports at registration: main.version
// if the build set it, else the module version and VCS revision.
func agentVersion() string {
	if version != "" {
		return version
	}
	bi := buildinfo.Read("corral-agent")
	if bi.Revision != "" {
		return bi.Version + "+" + bi.Revision
	}
	return bi.Version
}

// version is the agent version sent at registration: set at build time
// with -ldflags "-X main.version=…", else the build's module version
// (buildinfo).
var version = ""

// Environment variables that give flags their defaults.
const (
	envEndpoint  = "CORRAL_ENDPOINT"
	envTokenFile = "CORRAL_REGISTRATION_TOKEN_FILE"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the agent with args and returns its exit status: 0 after
// --help or a version request (`corral-agent version`, --version), 2 when
// it fails.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if buildinfo.Requested(args) {
		fmt.Fprint(stdout, buildinfo.Read("corral-agent"))
		return 0
	}
	err := run(ctx, args, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "corral-agent:", err)
		return 2
	}
}

type options struct {
	endpoint, tokenFile, name, region, zone, stateDir, dataDir, logLevel string
	machineIDFile                                                        string
	aggregates                                                           []string
	heartbeatInterval                                                    time.Duration
	compute                                                              computeOptions
	metrics                                                              metricsOptions
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	hostname, _ := os.Hostname()
	var aggregates string
	fs := flag.NewFlagSet("corral-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoint, "endpoint", os.Getenv(envEndpoint), "corrald's URL (env "+envEndpoint+")")
	fs.StringVar(&o.tokenFile, "registration-token-file", os.Getenv(envTokenFile),
		"file holding a registrar or admin token, read when the host registers (env "+envTokenFile+")")
	fs.StringVar(&o.name, "name", hostname, "the host's name in Corral")
	fs.StringVar(&o.region, "region", "", "the host's region (name or ID)")
	fs.StringVar(&o.zone, "zone", "", "the host's zone (name or ID)")
	fs.StringVar(&aggregates, "aggregates", "", "comma-separated aggregates of the host (names or IDs)")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/corral-agent", "directory for the agent's state (host ID and credential)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory whose file system holds guest disks; its size is reported (default --state-dir)")
	fs.StringVar(&o.machineIDFile, "machine-id-file", agent.DefaultMachineIDFile,
		"file holding the machine's ID; with --state-dir it identifies the machine, so a host that re-registers keeps its record")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", agent.DefaultHeartbeatInterval, "time between heartbeats")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Bool("version", false, "print build information (version, VCS revision and time, Go version) and exit; also: corral-agent version")
	o.compute.register(fs)
	o.metrics.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.metrics.check(); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for _, a := range strings.Split(aggregates, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.aggregates = append(o.aggregates, a)
		}
	}
	if o.dataDir == "" {
		o.dataDir = o.stateDir
	}
	if o.heartbeatInterval <= 0 {
		return o, errors.New("--heartbeat-interval must be positive")
	}
	var missing []string
	for _, f := range []struct{ flag, val string }{
		{"--endpoint", o.endpoint}, {"--name", o.name}, {"--region", o.region}, {"--zone", o.zone},
	} {
		if f.val == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// libvirt's qemu user must traverse the data directory to reach the
	// guests' disks and consoles below it (0711: not list it).
	if err := os.MkdirAll(o.dataDir, 0o711); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if o.compute.enabled {
		if err := os.Chmod(o.dataDir, 0o711); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	probe := agent.NewHostProbe(o.dataDir)
	cfg := agent.Config{
		Endpoint:              o.endpoint,
		RegistrationTokenFile: o.tokenFile,
		Name:                  o.name,
		Region:                o.region,
		Zone:                  o.zone,
		Aggregates:            o.aggregates,
		StateDir:              o.stateDir,
		MachineIDFile:         o.machineIDFile,
		HeartbeatInterval:     o.heartbeatInterval,
		Version:               agentVersion(),
		Prober:                probe,
		Logger:                log,
		WatchWait:             o.compute.watchWait,
		Resync:                o.compute.resync,
		GuestWorkers:          o.compute.workers,
	}
	reg := newRegistry()
	cfg.Registry = reg
	var a *agent.Agent
	if o.compute.enabled {
		driver, caps, err := o.compute.setup(ctx, o.name, o.dataDir, func() *client.Client { return a.Client() }, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cfg.Guests, probe.Guests, probe.Extra = driver, driver, caps
		cfg.Stats = guestStats{driver}
		cfg.Consoles = driver // the guests' console logs, uploaded for GET /v1/servers/{id}/console
	}
	if a, err = agent.New(cfg); err != nil {
		return err
	}
	stopMetrics, err := serveMetrics(ctx, o.metrics, reg, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if o.compute.enabled && o.compute.network {
		go runNetwork(ctx, log, o.endpoint, o.stateDir, o.compute.bridge, o.compute.tunnelIP, o.compute.physnets, o.compute.dhcpServer())
	}
	return a.Run(ctx)
}
