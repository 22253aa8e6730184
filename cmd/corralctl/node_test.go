package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeCreatePassword: the BMC password comes from a file or standard
// input, never from the command line.
func TestNodeCreatePassword(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(pwFile, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"node", "create", "bm1", "--region", "dc1", "--zone", "rack1", "--bmc-address", "10.0.0.5",
		"--bmc-username", "admin", "--mac", "52:54:00:7c:00:01", "-o", "json"}
	routes := map[string]route{"POST /v1/nodes": reply(201, `{"id":"node-1","name":"bm1"}`)}
	password := func(got []request) string {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("requests %+v, want one POST", got)
		}
		var body struct {
			BMC struct {
				Password string `json:"password"`
			} `json:"bmc"`
		}
		if err := json.Unmarshal([]byte(got[0].Body), &body); err != nil {
			t.Fatal(err)
		}
		return body.BMC.Password
	}

	_, stderr, code, got := runFake(t, routes, append(base, "--bmc-password-file", pwFile)...)
	if code != exitOK {
		t.Fatalf("--bmc-password-file: exit %d, %s", code, stderr)
	}
	if p := password(got); p != "s3cret pass" {
		t.Errorf("password from the file = %q, want its first line", p)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("from-stdin\r\nignored\n")
	w.Close()
	stdin := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = stdin; r.Close() })
	_, stderr, code, got = runFake(t, routes, append(base, "--bmc-password-stdin")...)
	if code != exitOK {
		t.Fatalf("--bmc-password-stdin: exit %d, %s", code, stderr)
	}
	if p := password(got); p != "from-stdin" {
		t.Errorf("password from stdin = %q, want its first line", p)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for name, tt := range map[string]struct {
		args []string
		code int
		want string
	}{
		"on the command line": {[]string{"--bmc-password", "pw"}, exitUsage, "unknown flag: --bmc-password"},
		"none":                {nil, exitUsage, "bmc-password-file bmc-password-stdin"},
		"both":                {[]string{"--bmc-password-file", pwFile, "--bmc-password-stdin"}, exitUsage, "none of the others can be"},
		"missing file":        {[]string{"--bmc-password-file", pwFile + ".nope"}, 1, "no such file"},
		"empty file":          {[]string{"--bmc-password-file", empty}, 1, "the password is empty"},
	} {
		_, stderr, code, got := runFake(t, routes, append(base, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) || len(got) != 0 {
			t.Errorf("%s: exit %d, stderr %q, %d requests; want exit %d with %q and no request", name, code, stderr, len(got), tt.code, tt.want)
		}
	}
}
