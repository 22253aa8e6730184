package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// The dashboard: plain HTML, CSS and JavaScript embedded in corrald, with
// no build step and nothing fetched from elsewhere, so it works offline.
// The files themselves need no token and hold no data: the page asks for a
// token, keeps it in the tab's sessionStorage and reads everything from
// the /v1 API with Authorization: Bearer, like any other client.

//go:embed ui
var uiFiles embed.FS

// uiCSP allows the page to load only its own files and to talk only to its
// own origin: no inline script or style, no frames, no other hosts.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiTypes are the content types of the dashboard's files, fixed here rather
// than read from the machine's MIME tables (which differ: a browser refuses
// a script served as text/plain under nosniff).
var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// uiAsset is one embedded file, ready to serve.
type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

// loadUI reads the embedded files once.
func loadUI() map[string]uiAsset {
	assets := map[string]uiAsset{}
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := uiTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for its extension", p)
		}
		sum := sha256.Sum256(b)
		assets[strings.TrimPrefix(p, "ui/")] = uiAsset{body: b, contentType: ct, etag: strconv.Quote(hex.EncodeToString(sum[:12]))}
		return nil
	})
	if err != nil {
		panic("embedded dashboard: " + err.Error()) // the files are compiled in: this cannot fail
	}
	return assets
}

// uiRoutes serves the dashboard at /ui/ and sends / there.
func (s *Server) uiRoutes(e *echo.Echo) {
	assets := loadUI()
	toUI := func(c echo.Context) error {
		uiHeaders(c)
		return c.Redirect(http.StatusFound, "/ui/")
	}
	e.GET("/", toUI)
	e.GET("/ui", toUI)
	e.GET("/ui/*", func(c echo.Context) error {
		name := c.Param("*")
		if name == "" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			return types.Errorf(types.CodeNotFound, "no dashboard file %q", name)
		}
		uiHeaders(c)
		h := c.Response().Header()
		h.Set("ETag", a.etag)
		// Revalidate every time: a new corrald may serve new files.
		h.Set("Cache-Control", "no-cache")
		if noneMatch(c.Request().Header.Values("If-None-Match"), a.etag) {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, a.contentType, a.body)
	})
}

// uiHeaders sets the dashboard's security headers.
func uiHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
