package docs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// curlCommand is one curl example: where it is and its arguments, as a
// shell would split them (quotes removed, variables left as written).
type curlCommand struct {
	where string
	args  []string
}

// curlCommands finds every curl command in text: from "curl " at the
// start of a line (after an optional "$ " prompt) to the first newline
// outside quotes and not escaped by a backslash.
func curlCommands(t *testing.T, name, text string) []curlCommand {
	t.Helper()
	var out []curlCommand
	lines := strings.SplitAfter(text, "\n")
	offset := 0
	for i, line := range lines {
		start := offset
		offset += len(line)
		trimmed := strings.TrimPrefix(strings.TrimLeft(line, " \t"), "$ ")
		if !strings.HasPrefix(trimmed, "curl ") {
			continue
		}
		start += strings.Index(line, "curl ")
		args, err := shellSplit(text[start:])
		if err != nil {
			t.Errorf("%s:%d: %v", name, i+1, err)
			continue
		}
		out = append(out, curlCommand{where: name + ":" + itoa(i+1), args: args})
	}
	return out
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// shellSplit splits the first command of s into words: single and double
// quotes (which may span lines), backslash escapes and backslash-newline
// continuations, ending at an unquoted newline. $VAR and $(…) stay as
// written.
func shellSplit(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++ // continuation
		case ch == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			inWord = true
			i++
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			cur.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case ch == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
			}
			if j >= len(s) {
				return nil, errUnterminated
			}
			cur.WriteString(strings.ReplaceAll(s[i+1:j], `\"`, `"`))
			inWord = true
			i = j
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
			if ch == '\n' {
				return args, nil
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

type splitError string

func (e splitError) Error() string { return string(e) }

const errUnterminated = splitError("unterminated quote in a curl example")

// markdownFiles returns the repository's README and every document here.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append(files, filepath.Join("..", "README.md"))
}

// TestCurlExamplesSendJSON: every curl example that sends a body (-d)
// also says it is JSON (corrald answers 415 to curl's default
// application/x-www-form-urlencoded), and the body it sends is one JSON
// object, as every route that takes a body requires. A file upload
// (--data-binary @file, -T) must name its own type.
func TestCurlExamplesSendJSON(t *testing.T) {
	total, withBody := 0, 0
	for _, f := range markdownFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range curlCommands(t, f, string(b)) {
			total++
			var bodies []string
			var contentType string
			upload := false
			for i := 0; i < len(cmd.args); i++ {
				a := cmd.args[i]
				next := ""
				if i+1 < len(cmd.args) {
					next = cmd.args[i+1]
				}
				switch a {
				case "-d", "--data", "--data-raw", "--json":
					bodies = append(bodies, next)
					if a == "--json" {
						contentType = "application/json"
					}
					i++
				case "--data-binary", "-T", "--upload-file":
					upload = true
					i++
				case "-H", "--header":
					if k, v, ok := strings.Cut(next, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Type") {
						contentType = strings.TrimSpace(v)
					}
					i++
				}
			}
			if upload && contentType == "" {
				t.Errorf("%s: uploads a file without -H 'Content-Type: …': %q", cmd.where, strings.Join(cmd.args, " "))
			}
			if len(bodies) == 0 {
				continue
			}
			withBody++
			if contentType != "application/json" {
				t.Errorf("%s: sends -d without -H 'Content-Type: application/json' (corrald answers 415): %q",
					cmd.where, strings.Join(cmd.args, " "))
			}
			for _, body := range bodies {
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Errorf("%s: body %s is not JSON: %v", cmd.where, body, err)
					continue
				}
				if _, ok := v.(map[string]any); !ok && body != "null" { // the edge section shows a null body refused
					t.Errorf("%s: body %s is not a JSON object", cmd.where, body)
				}
			}
		}
	}
	// The examples are there to be checked: finding none means the
	// parser broke, not that the docs are fine.
	if total < 20 || withBody < 10 {
		t.Fatalf("found %d curl examples, %d with a body: the parser no longer finds them", total, withBody)
	}
}
