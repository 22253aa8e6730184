package docs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/openapi"
)

// TestCurlExamplesFitOpenAPI: every curl example in the docs that is
// shown succeeding is a request the OpenAPI document corrald serves
// accepts: its route exists, its query parameters, headers and JSON body
// fit the schemas (an unknown or misspelt field fails). Examples shown
// answering an error ({"error":…} on the next line) are there to show
// the refusal, and are skipped.
func TestCurlExamplesFitOpenAPI(t *testing.T) {
	raw, err := openapi.JSON()
	if err != nil {
		t.Fatal(err)
	}
	v, err := openapi.NewValidator(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	checked, refusals := 0, 0
	for _, f := range markdownFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, cmd := range curlCommands(t, f, text) {
			if showsError(text, cmd) {
				refusals++
				continue
			}
			req, ok := curlRequest(t, cmd)
			if !ok {
				continue
			}
			checked++
			if err := v.Validate(context.Background(), req); err != nil {
				t.Errorf("%s: the OpenAPI document refuses this example: %v\n%s", cmd.where, err, strings.Join(cmd.args, " "))
			}
		}
	}
	if checked < 15 || refusals < 3 {
		t.Fatalf("checked %d examples, skipped %d refusals: the parser no longer finds them", checked, refusals)
	}
	t.Logf("%d curl examples fit the OpenAPI document; %d shown refused were skipped", checked, refusals)
}

// showsError reports whether the line after cmd (after its continuation
// lines) is an error body.
func showsError(text string, cmd curlCommand) bool {
	lines := strings.Split(text, "\n")
	var n int
	for i := range len(cmd.where) {
		if cmd.where[i] == ':' {
			n = 0
			for _, c := range cmd.where[i+1:] {
				n = n*10 + int(c-'0')
			}
		}
	}
	i := n - 1
	for i < len(lines) && strings.HasSuffix(strings.TrimRight(lines[i], " "), "\\") {
		i++
	}
	if i+1 >= len(lines) {
		return false
	}
	return strings.HasPrefix(strings.TrimSpace(lines[i+1]), `{"error"`)
}

// curlRequest turns a curl command into the request it sends, with
// $CORRAL_ENDPOINT as http://corral.example. ok is false for a command
// that talks to something else.
func curlRequest(t *testing.T, cmd curlCommand) (*http.Request, bool) {
	method, target, body := "", "", ""
	hdr := http.Header{}
	for i := 1; i < len(cmd.args); i++ {
		a := cmd.args[i]
		next := ""
		if i+1 < len(cmd.args) {
			next = cmd.args[i+1]
		}
		switch {
		case a == "-X" || a == "--request":
			method = next
			i++
		case a == "-H" || a == "--header":
			if k, val, ok := strings.Cut(next, ":"); ok {
				hdr.Set(strings.TrimSpace(k), strings.TrimSpace(val))
			}
			i++
		case a == "-d" || a == "--data" || a == "--data-raw":
			body = next
			i++
		case a == "--data-binary" || a == "-T" || a == "--upload-file":
			body = "binary data"
			i++
		case a == "-o" || a == "--output":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			target = a
		}
	}
	rest, ok := strings.CutPrefix(target, "$CORRAL_ENDPOINT")
	if !ok {
		return nil, false
	}
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
	}
	req := httptest.NewRequest(method, "http://corral.example"+rest, strings.NewReader(body))
	req.Header = hdr
	return req, true
}
