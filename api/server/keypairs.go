package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/ssh"
)

// maxPublicKeyLen bounds an imported public key (an RSA-16384 key in
// authorized_keys form is about 2.8 KB).
const maxPublicKeyLen = 8 << 10

// maxServerKeypairs bounds the keypairs one server names.
const maxServerKeypairs = 16

func (s *Server) keypairRoutes(g *echo.Group) {
	st := s.store
	g.POST("/keypairs", s.createKeypair)
	g.GET("/keypairs", func(c echo.Context) error {
		if err := allow(c, readers...); err != nil {
			return err
		}
		opts, err := listOptions(c, map[string]func(string) (string, error){"project": s.projectID(c), "name": nil})
		if err != nil {
			return err
		}
		if scope := projectScope(c); scope != "" {
			if f, ok := opts.Filters["project"]; ok && f != scope {
				return listJSON(c, types.List[types.Keypair]{}, nil)
			}
			opts.Filters["project"] = scope
		}
		l, err := st.ListKeypairs(c.Request().Context(), opts)
		return listJSON(c, l, err)
	})
	g.GET("/keypairs/:id", func(c echo.Context) error {
		kp, err := visible(c, st.GetKeypair)
		return found(c, kp.Revision, kp, err)
	})
	g.DELETE("/keypairs/:id", func(c echo.Context) error {
		kp, rev, err := writableVisible(c, func(c echo.Context) (types.Keypair, error) { return visible(c, st.GetKeypair) })
		if err != nil {
			return err
		}
		if err := st.DeleteKeypair(c.Request().Context(), kp.ID, rev); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
}

// createKeypair imports a public key into a project: it must parse as one
// OpenSSH authorized_keys line without options.
func (s *Server) createKeypair(c echo.Context) error {
	if err := allow(c, serverWrite...); err != nil {
		return err
	}
	var in types.KeypairCreate
	if err := s.decode(c, &in); err != nil {
		return err
	}
	if err := checkName("name", in.Name, maxNameLen); err != nil {
		return err
	}
	kp, err := parsePublicKey("public_key", in.PublicKey)
	if err != nil {
		return err
	}
	if kp.ProjectID, err = s.portProject(c, in.Project, ""); err != nil {
		return err
	}
	kp.Name = in.Name
	out, err := s.store.CreateKeypair(c.Request().Context(), kp)
	if err != nil {
		return err
	}
	return created(c, out.ID, out.Revision, out, nil)
}

// parsePublicKey checks an OpenSSH public key and returns it normalised
// (type, base64 blob and comment) with its type and SHA256 fingerprint.
func parsePublicKey(field, v string) (types.Keypair, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return types.Keypair{}, types.FieldError(field, "is required")
	case len(v) > maxPublicKeyLen:
		return types.Keypair{}, types.FieldError(field, "is %d bytes, the limit is %d", len(v), maxPublicKeyLen)
	case strings.ContainsAny(v, "\r\n"):
		return types.Keypair{}, types.FieldError(field, "must be one line")
	}
	pk, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(v))
	switch {
	case err != nil:
		return types.Keypair{}, types.FieldError(field, "is not an OpenSSH public key (\"ssh-ed25519 AAAA… comment\")")
	case len(options) > 0 || len(rest) > 0:
		return types.Keypair{}, types.FieldError(field, "must be a bare public key, without authorized_keys options")
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	return types.Keypair{Type: pk.Type(), PublicKey: line, Fingerprint: ssh.FingerprintSHA256(pk)}, nil
}

// serverBootstrap resolves a server create's keypairs (in the server's
// project: another project's keypair is a missing one) and decodes its
// user data; nil when the request has neither.
func (s *Server) serverBootstrap(c echo.Context, srv types.Server, in types.ServerCreate) (*store.ServerBootstrap, error) {
	names := slices.Clone(in.Keypairs)
	field := "keypairs"
	if in.KeyName != "" {
		if len(in.Keypairs) > 0 {
			return nil, types.FieldError("key_name", "give key_name or keypairs, not both")
		}
		names, field = []string{in.KeyName}, "key_name"
	}
	if len(names) == 0 && in.UserData == "" {
		return nil, nil
	}
	if len(names) > maxServerKeypairs {
		return nil, types.FieldError(field, "names %d keypairs, the limit is %d", len(names), maxServerKeypairs)
	}
	out := &store.ServerBootstrap{}
	ctx := store.WithProject(c.Request().Context(), srv.ProjectID)
	for i, n := range names {
		f := field
		if field == "keypairs" {
			f = fmt.Sprintf("keypairs[%d]", i)
		}
		if n == "" {
			return nil, types.FieldError(f, "is empty")
		}
		kp, err := s.store.GetKeypair(ctx, n)
		if err != nil {
			return nil, refError(f, err)
		}
		if slices.Contains(out.KeyNames, kp.Name) {
			return nil, types.FieldError(f, "keypair %s is listed twice", kp.Name)
		}
		out.KeyNames = append(out.KeyNames, kp.Name)
		out.PublicKeys = append(out.PublicKeys, kp.PublicKey)
	}
	if in.UserData != "" {
		if len(in.UserData) > base64.StdEncoding.EncodedLen(types.MaxUserDataBytes) {
			return nil, types.FieldError("user_data", "is %d bytes encoded, the limit is %d bytes decoded", len(in.UserData),
				types.MaxUserDataBytes).WithDetail("limit", types.MaxUserDataBytes)
		}
		data, err := base64.StdEncoding.DecodeString(in.UserData)
		if err != nil {
			return nil, types.FieldError("user_data", "is not base64 (standard alphabet, padded): encode it, as with base64 -w0")
		}
		if len(data) > types.MaxUserDataBytes {
			return nil, types.FieldError("user_data", "is %d bytes decoded, the limit is %d", len(data), types.MaxUserDataBytes).
				WithDetail("limit", types.MaxUserDataBytes)
		}
		if !utf8.Valid(data) || strings.ContainsRune(string(data), 0) {
			return nil, types.FieldError("user_data", "must decode to UTF-8 text without NUL bytes (a cloud-config, a script)")
		}
		out.UserData = data
	}
	return out, nil
}
