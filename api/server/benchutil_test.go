package server

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
)

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func (e *env) request(method, path, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.http.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	return req
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func decodeResp(b *testing.B, resp *http.Response, v any) {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatal(err)
	}
}

// benchCatalogue creates a catalogue through the store (no *testing.T).
func (e *env) benchCatalogue(b *testing.B) catalogue {
	var c catalogue
	var err error
	ctx := b.Context()
	if c.flavor, err = e.store.CreateFlavor(ctx, types.FlavorCreate{Name: "m1", Kind: "vm", VCPUs: 1, RAMMiB: 512, DiskGiB: 1}); err != nil {
		b.Fatal(err)
	}
	img, err := e.store.CreateImage(ctx, types.ImageCreate{Name: "tiny", DiskFormat: "qcow2"})
	if err != nil {
		b.Fatal(err)
	}
	if c.image, err = e.store.SetImageData(ctx, img.ID, 1, "00"); err != nil {
		b.Fatal(err)
	}
	if c.project, err = e.store.CreateProject(ctx, types.ProjectCreate{Name: "p"}); err != nil {
		b.Fatal(err)
	}
	return c
}
