package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    options
		wantErr string
	}{
		{name: "flags",
			args: []string{"--endpoint", "http://c:8440", "--registration-token-file", "/etc/corral/reg", "--name", "cmp-1",
				"--region", "dc1", "--zone", "rack1", "--aggregates", "general, fast-disk,,", "--heartbeat-interval", "500ms"},
			want: options{endpoint: "http://c:8440", tokenFile: "/etc/corral/reg", name: "cmp-1", region: "dc1", zone: "rack1",
				stateDir: "/var/lib/corral-agent", dataDir: "/var/lib/corral-agent", logLevel: "info", machineIDFile: "/etc/machine-id",
				aggregates: []string{"general", "fast-disk"}, heartbeatInterval: 500 * time.Millisecond}},
		{name: "environment",
			env: map[string]string{envEndpoint: "https://corral:8440", envTokenFile: "/run/reg"},
			args: []string{"--name", "cmp-2", "--region", "dc1", "--zone", "rack1", "--state-dir", "/s", "--data-dir", "/d",
				"--machine-id-file", "/m"},
			want: options{endpoint: "https://corral:8440", tokenFile: "/run/reg", name: "cmp-2", region: "dc1", zone: "rack1",
				stateDir: "/s", dataDir: "/d", logLevel: "info", machineIDFile: "/m", heartbeatInterval: 5 * time.Second}},
		{name: "flags beat the environment",
			env:  map[string]string{envEndpoint: "https://env:8440"},
			args: []string{"--endpoint", "https://flag:8440", "--name", "n", "--region", "r", "--zone", "z"},
			want: options{endpoint: "https://flag:8440", name: "n", region: "r", zone: "z",
				stateDir: "/var/lib/corral-agent", dataDir: "/var/lib/corral-agent", logLevel: "info", machineIDFile: "/etc/machine-id",
				heartbeatInterval: 5 * time.Second}},
		{name: "missing placement", args: []string{"--endpoint", "http://c", "--name", "n"}, wantErr: "missing --region, --zone"},
		{name: "missing endpoint", args: []string{"--name", "n", "--region", "r", "--zone", "z"}, wantErr: "missing --endpoint"},
		{name: "bad interval", args: []string{"--endpoint", "http://c", "--region", "r", "--zone", "z", "--heartbeat-interval", "0s"},
			wantErr: "--heartbeat-interval must be positive"},
		{name: "metrics on loopback",
			args: []string{"--endpoint", "http://c", "--name", "n", "--region", "r", "--zone", "z", "--metrics-listen", "127.0.0.1:9470"},
			want: options{endpoint: "http://c", name: "n", region: "r", zone: "z",
				stateDir: "/var/lib/corral-agent", dataDir: "/var/lib/corral-agent", logLevel: "info", machineIDFile: "/etc/machine-id",
				heartbeatInterval: 5 * time.Second, metrics: metricsOptions{listen: "127.0.0.1:9470"}}},
		{name: "metrics off loopback without a token",
			args:    []string{"--endpoint", "http://c", "--name", "n", "--region", "r", "--zone", "z", "--metrics-listen", ":9470"},
			wantErr: "--metrics-listen :9470 is reachable from other machines: give --metrics-token-file, or listen on 127.0.0.1"},
		{name: "stray argument", args: []string{"--endpoint", "http://c", "--region", "r", "--zone", "z", "extra"},
			wantErr: "unexpected arguments: extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envEndpoint, tt.env[envEndpoint])
			t.Setenv(envTokenFile, tt.env[envTokenFile])
			got, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.compute.enabled || got.compute.libvirtURI != "qemu:///system" || got.compute.domainType != "auto" ||
				got.compute.allowTCG || got.compute.bridge != "br-int" || got.compute.deletedDiskGrace != 24*time.Hour {
				t.Errorf("compute defaults = %+v", got.compute)
			}
			got.compute = computeOptions{} // checked above
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(options{}, computeOptions{}, metricsOptions{})); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHelpAndVersion: --help exits 0, the version requests print build
// information and exit 0 without starting anything, and a bad flag fails.
func TestHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"help", []string{"--help"}, 0, ""},
		{"version command", []string{"version"}, 0, "corral-agent "},
		{"version flag", []string{"--endpoint", "http://c", "--version"}, 0, "corral-agent "},
		{"bad flag", []string{"--no-such-flag"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("corral-agent %v exited %d, want %d; stderr %s", tc.args, code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || (tc.stdout != "" && !strings.Contains(stdout.String(), "go:       go1.")) {
				t.Errorf("stdout %q, want %q and the Go version", stdout.String(), tc.stdout)
			}
		})
	}
}

// TestPhysnetFlag: --physnet is repeatable, names each physical network
// once, and refuses malformed mappings.
func TestPhysnetFlag(t *testing.T) {
	base := []string{"--endpoint", "http://c", "--name", "n", "--region", "r", "--zone", "z"}
	o, err := parseFlags(append(base, "--physnet", "datacentre=br-ex", "--physnet", "storage=br-st:eth1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := physnetFlag{"datacentre": {Bridge: "br-ex"}, "storage": {Bridge: "br-st", Interface: "eth1"}}
	if diff := cmp.Diff(want, o.compute.physnets); diff != "" {
		t.Errorf("physnets (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"datacentre", "datacentre=", "data centre=br-ex"} {
		if _, err := parseFlags(append(base, "--physnet", bad), io.Discard); err == nil {
			t.Errorf("--physnet %q accepted", bad)
		}
	}
	if _, err := parseFlags(append(base, "--physnet", "d=br-a", "--physnet", "d=br-b"), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "given twice") {
		t.Errorf("a physical network given twice: %v", err)
	}
}
