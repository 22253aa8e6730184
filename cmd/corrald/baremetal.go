package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/server"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/baremetal"
	"github.com/corral-cloud/corral/baremetal/ipmi"
	bmovs "github.com/corral-cloud/corral/baremetal/ovs"
	"github.com/corral-cloud/corral/baremetal/pxe"
	"github.com/prometheus/client_golang/prometheus"
)

// bmcMetrics counts and times the BMC commands of this replica's
// conductor: corral_bmc_commands_total by command and result,
// corral_bmc_errors_total by BMC and kind, and
// corral_bmc_command_duration_seconds. A command cut short by corrald's
// own shutdown is not counted.
func bmcMetrics(reg prometheus.Registerer) baremetal.CallObserver {
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_bmc_commands_total",
		Help: "BMC commands sent by this replica, by command and result (ok, unreachable, rejected, error)."},
		[]string{"op", "result"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_bmc_errors_total",
		Help: "Failed BMC commands by BMC address and kind (unreachable, rejected, error)."}, []string{"bmc", "kind"})
	took := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_bmc_command_duration_seconds",
		Help:    "Time a BMC command took, retries included, by command.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"op"})
	for _, op := range []string{"power_state", "set_power", "set_boot_device"} {
		commands.WithLabelValues(op, "ok") // present at 0 from the start
	}
	reg.MustRegister(commands, errs, took)
	return func(bmc, op string, d time.Duration, err error) {
		if errors.Is(err, context.Canceled) {
			return
		}
		result := "ok"
		switch {
		case err == nil:
		case errors.Is(err, baremetal.ErrUnreachable):
			result = "unreachable"
		case errors.Is(err, baremetal.ErrRejected):
			result = "rejected"
		default:
			result = "error"
		}
		commands.WithLabelValues(op, result).Inc()
		took.WithLabelValues(op).Observe(d.Seconds())
		if err != nil {
			errs.WithLabelValues(bmc, result).Inc()
		}
	}
}

// bmOptions are the bare-metal flags.
type bmOptions struct {
	keyFile, cipherSuites                         string
	keyGenerate                                   bool
	bmcTimeout, bmcMinInterval, bmcBackoff        time.Duration
	bmcAttempts                                   int
	leaseTTL, poll, syncEvery                     time.Duration
	inspectTimeout, deployTimeout, cleanTimeout   time.Duration
	pxeInterface, pxeAddress, ramdiskDir, dnsmasq string
	pxeHTTPPort                                   int
	tokenTTL                                      time.Duration
	switchDriver, switchBridge                    string
	provisioningVLAN, parkingVLAN                 int
}

// baremetalFlags registers the bare-metal flags on fs.
func baremetalFlags(fs *flag.FlagSet) *bmOptions {
	o := &bmOptions{}
	fs.StringVar(&o.keyFile, "bmc-key-file", "", "AES-256 key (64 hex digits) sealing BMC passwords at rest "+
		"(default <data-dir>/bmc.key; env CORRAL_BMC_KEY gives the key itself); replicas must share it. It may live outside "+
		"the data directory. A missing file is an error, except the default file on a first start (no nodes enrolled yet)")
	fs.BoolVar(&o.keyGenerate, "bmc-key-generate", false, "create --bmc-key-file with a new random key if it does not exist "+
		"(an existing key is never replaced)")
	fs.StringVar(&o.cipherSuites, "bmc-cipher-suites", "3,17", "IPMI lanplus cipher suites to try, in order")
	fs.DurationVar(&o.bmcTimeout, "bmc-timeout", 10*time.Second, "time limit of one attempt of one BMC command")
	fs.IntVar(&o.bmcAttempts, "bmc-attempts", 3, "attempts of a BMC command while the BMC does not answer")
	fs.DurationVar(&o.bmcBackoff, "bmc-backoff", time.Second, "pause after the first failed attempt (doubles)")
	fs.DurationVar(&o.bmcMinInterval, "bmc-min-interval", time.Second, "least time between two commands to one BMC")
	fs.DurationVar(&o.leaseTTL, "conductor-lease", 30*time.Second, "how long a replica's lease on a node lasts unrenewed")
	fs.DurationVar(&o.poll, "conductor-poll", 2*time.Second, "how often the conductor looks for nodes to drive")
	fs.DurationVar(&o.syncEvery, "power-sync-interval", 30*time.Second, "how often idle nodes' power states are read")
	fs.DurationVar(&o.inspectTimeout, "inspect-timeout", 10*time.Minute, "time limit for the deploy agent's inspection report")
	fs.DurationVar(&o.deployTimeout, "deploy-timeout", 30*time.Minute, "time limit for the deploy agent to write an image")
	fs.DurationVar(&o.cleanTimeout, "clean-timeout", 15*time.Minute, "time limit for the deploy agent to clean a node")
	fs.StringVar(&o.pxeInterface, "pxe-interface", "", "provisioning network interface; empty disables inspection, deploys and cleaning")
	fs.StringVar(&o.pxeAddress, "pxe-address", "", "corrald's address on the provisioning network, with its prefix (e.g. 10.79.0.1/24)")
	fs.IntVar(&o.pxeHTTPPort, "pxe-http-port", 8089, "port of the iPXE/ramdisk/image HTTP server on --pxe-address")
	fs.StringVar(&o.ramdiskDir, "pxe-ramdisk-dir", "", "directory with the deploy ramdisk's vmlinuz and initrd.gz (baremetal/ramdisk/build.sh)")
	fs.StringVar(&o.dnsmasq, "dnsmasq", "dnsmasq", "dnsmasq binary")
	fs.DurationVar(&o.tokenTTL, "deploy-token-ttl", 30*time.Minute, "how long a node's single-use boot token (in its iPXE script) "+
		"may wait for the deploy agent to exchange it")
	fs.StringVar(&o.switchDriver, "switch", "", "switch driver that takes active nodes off the provisioning network: "+
		"\"ovs\" (an Open vSwitch bridge), or empty for none (active nodes then stay on it)")
	fs.StringVar(&o.switchBridge, "switch-bridge", "", "with --switch ovs: the only bridge whose ports are changed (default: any)")
	fs.IntVar(&o.provisioningVLAN, "switch-provisioning-vlan", 100, "with --switch ovs: access VLAN of the provisioning network")
	fs.IntVar(&o.parkingVLAN, "switch-parking-vlan", 4094, "with --switch ovs: access VLAN of a node off the provisioning network")
	return o
}

// startBaremetal loads the BMC key, builds the IPMI driver, the
// provisioning network service (when configured) and the conductor, and
// runs them until ctx ends.
func startBaremetal(ctx context.Context, o *bmOptions, st *store.Store, dataDir, imageDir string, log *slog.Logger,
	reg prometheus.Registerer) (server.BaremetalConfig, error) {
	var keys *baremetal.Keyring
	if env := os.Getenv("CORRAL_BMC_KEY"); env != "" {
		key, err := baremetal.ParseKey(env)
		if err != nil {
			return server.BaremetalConfig{}, fmt.Errorf("CORRAL_BMC_KEY: %w", err)
		}
		if keys, err = baremetal.NewKeyring(key); err != nil {
			return server.BaremetalConfig{}, err
		}
	} else {
		var err error
		if keys, err = loadBMCKey(ctx, o, st, dataDir, log); err != nil {
			return server.BaremetalConfig{}, err
		}
	}
	driver := baremetal.Observe(ipmi.New(ipmi.Config{CipherSuites: strings.Split(o.cipherSuites, ","), CallTimeout: o.bmcTimeout,
		Attempts: o.bmcAttempts, Backoff: o.bmcBackoff, MinInterval: o.bmcMinInterval}), bmcMetrics(reg))
	host, _ := os.Hostname()
	cfg := baremetal.ConductorConfig{ID: fmt.Sprintf("%s-%d", host, os.Getpid()), LeaseTTL: o.leaseTTL, Poll: o.poll,
		SyncEvery: o.syncEvery, InspectTimeout: o.inspectTimeout, DeployTimeout: o.deployTimeout, CleanTimeout: o.cleanTimeout,
		TokenTTL: o.tokenTTL, Logger: log.With("component", "conductor")}
	switch o.switchDriver {
	case "":
	case "ovs":
		sw, err := bmovs.New(bmovs.Config{Bridge: o.switchBridge, ProvisioningVLAN: o.provisioningVLAN, ParkingVLAN: o.parkingVLAN})
		if err != nil {
			return server.BaremetalConfig{}, err
		}
		cfg.Switch = sw
	default:
		return server.BaremetalConfig{}, fmt.Errorf("--switch %q: want \"ovs\" or empty", o.switchDriver)
	}
	if o.tokenTTL <= 0 {
		return server.BaremetalConfig{}, errors.New("--deploy-token-ttl must be positive")
	}
	var prov baremetal.Provisioner
	var svc *pxe.Service
	if o.pxeInterface != "" {
		ip, subnet, err := net.ParseCIDR(o.pxeAddress)
		if err != nil || ip.To4() == nil {
			return server.BaremetalConfig{}, errors.New("--pxe-address must be an IPv4 address with its prefix, e.g. 10.79.0.1/24")
		}
		if o.ramdiskDir == "" {
			return server.BaremetalConfig{}, errors.New("--pxe-interface needs --pxe-ramdisk-dir")
		}
		svc, err = pxe.New(pxe.Config{Interface: o.pxeInterface, Address: ip, Subnet: subnet, HTTPPort: o.pxeHTTPPort,
			RamdiskDir: o.ramdiskDir, ImageDir: imageDir, StateDir: filepath.Join(dataDir, "pxe"), Dnsmasq: o.dnsmasq,
			Logger: log.With("component", "pxe")}, st, keys)
		if err != nil {
			return server.BaremetalConfig{}, err
		}
		prov = svc
	}
	cond := baremetal.NewConductor(cfg, st, driver, prov, keys)
	if svc != nil {
		svc.SetOnReport(cond.Wake)
		go func() {
			if err := svc.Run(ctx); err != nil {
				log.Error("provisioning network", "error", err)
			}
		}()
	}
	go cond.Run(ctx)
	log.Info("bare metal ready", "conductor", cond.ID(), "pxe", o.pxeInterface)
	return server.BaremetalConfig{Keyring: keys, Conductor: cond}, nil
}

// loadBMCKey reads the BMC key file. A new key is made only on purpose:
// with --bmc-key-generate, or at the default path on a first start (no
// node enrolled, so no password sealed yet). Anything else that finds no
// file is an error: a silently new key would leave every sealed BMC
// password unreadable, and replicas disagreeing.
func loadBMCKey(ctx context.Context, o *bmOptions, st *store.Store, dataDir string, log *slog.Logger) (*baremetal.Keyring, error) {
	path, explicit := o.keyFile, o.keyFile != ""
	if !explicit {
		path = filepath.Join(dataDir, "bmc.key")
	}
	create := o.keyGenerate
	if !explicit && !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			nodes, err := st.ListNodes(ctx, store.ListOptions{Limit: 1, Filters: map[string]string{}})
			if err != nil {
				return nil, fmt.Errorf("bmc key: count nodes: %w", err)
			}
			if len(nodes.Items) > 0 {
				return nil, fmt.Errorf("bmc key %s does not exist, but nodes are enrolled whose BMC passwords were sealed with a key: "+
					"restore the key file, point --bmc-key-file at it or set CORRAL_BMC_KEY (--bmc-key-generate makes a new key; "+
					"the nodes' passwords must then be enrolled again)", path)
			}
			create = true // first start
		}
	}
	keys, made, err := baremetal.LoadKeyFile(path, create)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--bmc-key-file %s does not exist: give the path of the key the other replicas use, "+
			"or add --bmc-key-generate to create a new one", path)
	}
	if err != nil {
		return nil, err
	}
	if made {
		log.Warn("created a BMC key; back it up, and give other replicas the same one", "file", path)
	}
	return keys, nil
}
