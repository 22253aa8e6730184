package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveSettings(t *testing.T) {
	files := map[string]string{
		"/flag-token":  "from-flag-file\n",
		"/env-token":   "  from-env-file  \n",
		"/conf-token":  "from-conf-file",
		"/empty-token": "\n",
	}
	readFile := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	tests := []struct {
		name             string
		flags, env, file source
		want             settings
		wantErr          string
	}{
		{
			name: "nothing set: default endpoint, no token",
			want: settings{Endpoint: defaultEndpoint},
		},
		{
			name: "config file only",
			file: source{Endpoint: "http://conf:1", Token: "conf-token"},
			want: settings{Endpoint: "http://conf:1", Token: "conf-token", TokenFrom: "token in the configuration file"},
		},
		{
			name: "env beats config file",
			env:  source{Endpoint: "http://env:1", Token: "env-token"},
			file: source{Endpoint: "http://conf:1", Token: "conf-token"},
			want: settings{Endpoint: "http://env:1", Token: "env-token", TokenFrom: envToken},
		},
		{
			name:  "flags beat env and config file",
			flags: source{Endpoint: "http://flag:1", Token: "flag-token"},
			env:   source{Endpoint: "http://env:1", Token: "env-token"},
			file:  source{Endpoint: "http://conf:1", Token: "conf-token"},
			want:  settings{Endpoint: "http://flag:1", Token: "flag-token", TokenFrom: "--token"},
		},
		{
			name:  "endpoint and token resolve independently",
			flags: source{Endpoint: "http://flag:1"},
			file:  source{Endpoint: "http://conf:1", Token: "conf-token"},
			want:  settings{Endpoint: "http://flag:1", Token: "conf-token", TokenFrom: "token in the configuration file"},
		},
		{
			name:  "a token file flag beats a token in the env",
			flags: source{TokenFile: "/flag-token"},
			env:   source{Token: "env-token"},
			want:  settings{Endpoint: defaultEndpoint, Token: "from-flag-file", TokenFrom: "--token-file /flag-token"},
		},
		{
			name: "env token file, trimmed",
			env:  source{TokenFile: "/env-token"},
			file: source{Token: "conf-token"},
			want: settings{Endpoint: defaultEndpoint, Token: "from-env-file", TokenFrom: envTokenFile + " /env-token"},
		},
		{
			name: "within one level the token beats the token file",
			env:  source{Token: "env-token", TokenFile: "/missing"},
			want: settings{Endpoint: defaultEndpoint, Token: "env-token", TokenFrom: envToken},
		},
		{
			name: "config file token file",
			file: source{TokenFile: "/conf-token"},
			want: settings{Endpoint: defaultEndpoint, Token: "from-conf-file", TokenFrom: "token_file in the configuration file /conf-token"},
		},
		{
			name:    "missing token file",
			env:     source{TokenFile: "/missing"},
			wantErr: "read token file (CORRAL_TOKEN_FILE): open /missing: file does not exist",
		},
		{
			name:    "empty token file",
			flags:   source{TokenFile: "/empty-token"},
			wantErr: "token file /empty-token (--token-file) is empty",
		},
		{
			name:    "endpoint without a scheme",
			flags:   source{Endpoint: "127.0.0.1:8440"},
			wantErr: `endpoint "127.0.0.1:8440": want a URL such as http://127.0.0.1:8440`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveSettings(tt.flags, tt.env, tt.file, readFile)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		optional bool
		want     source
		wantErr  string
	}{
		{
			name: "all keys; a relative token file is relative to the file",
			path: write("full.json", `{"endpoint":"https://corral:8440","token":"t","token_file":"secrets/token"}`),
			want: source{Endpoint: "https://corral:8440", Token: "t", TokenFile: filepath.Join(dir, "secrets/token")},
		},
		{
			name: "absolute token file kept",
			path: write("abs.json", `{"token_file":"/etc/corral/token"}`),
			want: source{TokenFile: "/etc/corral/token"},
		},
		{
			name:     "missing default file is no error",
			path:     filepath.Join(dir, "nope.json"),
			optional: true,
		},
		{
			name:    "missing named file is an error",
			path:    filepath.Join(dir, "nope.json"),
			wantErr: "no such file",
		},
		{
			name:    "unknown key",
			path:    write("typo.json", `{"endpiont":"http://x"}`),
			wantErr: `unknown field "endpiont"`,
		},
		{
			name:    "not JSON",
			path:    write("bad.json", `endpoint = "http://x"`),
			wantErr: "invalid character",
		},
		{
			name: "no path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadConfigFile(tt.path, tt.optional)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("source (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultConfigPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"XDG_CONFIG_HOME wins", map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/corral/config.json"},
		{"HOME", map[string]string{"HOME": "/home/u"}, "/home/u/.config/corral/config.json"},
		{"neither", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultConfigPath(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
