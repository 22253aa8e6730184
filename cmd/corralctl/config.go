package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// defaultEndpoint is the endpoint used when no flag, variable or
// configuration file names one: a corrald on the same machine.
const defaultEndpoint = "http://127.0.0.1:8440"

// Environment variables read by corralctl.
const (
	envEndpoint  = "CORRAL_ENDPOINT"
	envToken     = "CORRAL_TOKEN"
	envTokenFile = "CORRAL_TOKEN_FILE"
	envConfig    = "CORRAL_CONFIG"
)

// source is the connection settings that one level of configuration (the
// flags, the environment or the configuration file) gives. Empty fields
// are unset.
type source struct {
	Endpoint  string `json:"endpoint"`
	Token     string `json:"token"`
	TokenFile string `json:"token_file"`
}

// settings are the resolved connection settings.
type settings struct {
	// Endpoint is corrald's base URL.
	Endpoint string
	// Token is the bearer token; empty when none was configured.
	Token string
	// TokenFrom says where Token came from, for error messages, e.g.
	// "--token-file /etc/corral/token" or "CORRAL_TOKEN".
	TokenFrom string
}

// level is one source with the names its settings go by.
type level struct {
	src                        source
	endpoint, token, tokenFile string // names for messages
}

// resolveSettings merges the levels of configuration, highest precedence first:
// flags, then environment, then file. For the endpoint, the first level
// that sets one wins, else defaultEndpoint. For the credential, the first
// level that sets a token or a token file wins, and within a level the
// token wins over the file. readFile reads token files (os.ReadFile in
// production); a token file must hold a non-empty token.
func resolveSettings(flags, env, file source, readFile func(string) ([]byte, error)) (settings, error) {
	levels := []level{
		{flags, "--endpoint", "--token", "--token-file"},
		{env, envEndpoint, envToken, envTokenFile},
		{file, "endpoint in the configuration file", "token in the configuration file", "token_file in the configuration file"},
	}
	s := settings{Endpoint: defaultEndpoint}
	for _, l := range levels {
		if l.src.Endpoint != "" {
			s.Endpoint = l.src.Endpoint
			break
		}
	}
	if !strings.Contains(s.Endpoint, "://") {
		return s, fmt.Errorf("endpoint %q: want a URL such as %s", s.Endpoint, defaultEndpoint)
	}
	for _, l := range levels {
		switch {
		case l.src.Token != "":
			s.Token, s.TokenFrom = strings.TrimSpace(l.src.Token), l.token
		case l.src.TokenFile != "":
			data, err := readFile(l.src.TokenFile)
			if err != nil {
				return s, fmt.Errorf("read token file (%s): %w", l.tokenFile, err)
			}
			tok := strings.TrimSpace(string(data))
			if tok == "" {
				return s, fmt.Errorf("token file %s (%s) is empty", l.src.TokenFile, l.tokenFile)
			}
			s.Token, s.TokenFrom = tok, l.tokenFile+" "+l.src.TokenFile
		default:
			continue
		}
		break
	}
	return s, nil
}

// defaultConfigPath returns where the configuration file is looked for
// when neither --config nor CORRAL_CONFIG names one:
// $XDG_CONFIG_HOME/corral/config.json, or ~/.config/corral/config.json.
// It returns "" when neither XDG_CONFIG_HOME nor HOME is set.
func defaultConfigPath(getenv func(string) string) string {
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "corral", "config.json")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "corral", "config.json")
	}
	return ""
}

// loadConfigFile reads a configuration file. When the file does not exist
// and optional is true (the default path), it returns an empty source.
// Unknown keys are errors, so that a typo never goes unnoticed. A relative
// token_file is made relative to the file's directory.
func loadConfigFile(path string, optional bool) (source, error) {
	var src source
	if path == "" {
		return src, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		return src, nil
	}
	if err != nil {
		return src, fmt.Errorf("read configuration: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&src); err != nil {
		return src, fmt.Errorf("configuration file %s: %w", path, err)
	}
	if src.TokenFile != "" && !filepath.IsAbs(src.TokenFile) {
		src.TokenFile = filepath.Join(filepath.Dir(path), src.TokenFile)
	}
	return src, nil
}
