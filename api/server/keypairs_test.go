package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/types"
	"golang.org/x/crypto/ssh"
)

// testPublicKey returns a fresh ed25519 public key in authorized_keys form.
func testPublicKey() string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " test@corral"
}

func TestParsePublicKey(t *testing.T) {
	good := testPublicKey()
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"ed25519", good, ""},
		{"surrounding space", "  " + good + "\n", ""},
		{"empty", "", "is required"},
		{"garbage", "ssh-ed25519 AAAAnotbase64!!", "is not an OpenSSH public key"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "is not an OpenSSH public key"},
		{"options", `command="/bin/sh" ` + good, "without authorized_keys options"},
		{"two lines", good + "\n" + good, "must be one line"},
		{"too long", good + strings.Repeat("x", maxPublicKeyLen), "the limit is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := parsePublicKey("public_key", tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if kp.Type != "ssh-ed25519" || !strings.HasPrefix(kp.Fingerprint, "SHA256:") || kp.PublicKey != good {
					t.Errorf("parsed %+v", kp)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestServerBootstrap checks keypairs and user data on server create: the
// server shows its keys' names and the user data's size, the host's guest
// spec carries the keys and the data, and bad input is refused naming the
// field.
func TestServerBootstrap(t *testing.T) {
	e := newEnv(t)
	c := e.catalogue()
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "alpha"}, nil)
	e.must(201, "POST", "/v1/projects", types.ProjectCreate{Name: "beta"}, nil)
	key := testPublicKey()
	var kp types.Keypair
	e.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: "ops", Project: "alpha", PublicKey: key}, &kp)
	e.must(201, "POST", "/v1/keypairs", types.KeypairCreate{Name: "theirs", Project: "beta", PublicKey: testPublicKey()}, nil)
	if r := e.call(e.admin, "POST", "/v1/keypairs", types.KeypairCreate{Name: "ops", Project: "alpha", PublicKey: key}); r.status != http.StatusConflict {
		t.Errorf("a second keypair named ops: %d, want 409", r.status)
	}

	userData := "#cloud-config\nruncmd:\n  - echo hello\n"
	var srv types.Server
	e.must(201, "POST", "/v1/servers", types.ServerCreate{Name: "web-1", Kind: "vm", Project: "alpha", Flavor: c.flavor.ID, Image: c.image.ID,
		KeyName: "ops", UserData: base64.StdEncoding.EncodeToString([]byte(userData))}, &srv)
	if len(srv.KeyNames) != 1 || srv.KeyNames[0] != "ops" || srv.UserDataBytes != len(userData) {
		t.Errorf("server shows keys %v and %d bytes of user data", srv.KeyNames, srv.UserDataBytes)
	}
	specs, err := e.store.HostGuests(t.Context(), srv.HostID)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Bootstrap == nil {
		t.Fatalf("specs = %+v", specs)
	}
	b := specs[0].Bootstrap
	if b.Hostname != "web-1" || len(b.PublicKeys) != 1 || b.PublicKeys[0] != key || string(b.UserData) != userData {
		t.Errorf("bootstrap = %+v", b)
	}

	base := func() types.ServerCreate {
		return types.ServerCreate{Name: "web-2", Kind: "vm", Project: "alpha", Flavor: c.flavor.ID, Image: c.image.ID}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*types.ServerCreate)
		field string
	}{
		{"another project's keypair", func(c *types.ServerCreate) { c.KeyName = "theirs" }, "key_name"},
		{"missing keypair", func(c *types.ServerCreate) { c.Keypairs = []string{"ops", "nope"} }, "keypairs[1]"},
		{"both forms", func(c *types.ServerCreate) { c.KeyName, c.Keypairs = "ops", []string{"ops"} }, "key_name"},
		{"twice", func(c *types.ServerCreate) { c.Keypairs = []string{"ops", kp.ID} }, "keypairs[1]"},
		{"not base64", func(c *types.ServerCreate) { c.UserData = "#cloud-config" }, "user_data"},
		{"binary", func(c *types.ServerCreate) { c.UserData = base64.StdEncoding.EncodeToString([]byte{0xff, 0, 1}) }, "user_data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			r := e.call(e.admin, "POST", "/v1/servers", in)
			if r.status/100 != 4 || !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
				t.Errorf("answer %d %s, want a 4xx naming %s", r.status, r.body, tc.field)
			}
		})
	}
}
