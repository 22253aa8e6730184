package types

// Keypair is the public half of an SSH keypair a project keeps in Corral,
// to be installed into its servers' guests at boot (cloud-init's
// ssh_authorized_keys). Corral never holds the private key.
type Keypair struct {
	Meta
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	// Type is the key's algorithm as OpenSSH names it ("ssh-ed25519").
	Type string `json:"type"`
	// PublicKey is the key in OpenSSH authorized_keys form, without
	// options.
	PublicKey string `json:"public_key"`
	// Fingerprint is the key's SHA256 fingerprint as ssh-keygen -l prints it.
	Fingerprint string `json:"fingerprint"`
}

// KeypairCreate imports a public key into a project.
type KeypairCreate struct {
	Name    string `json:"name"`
	Project string `json:"project,omitempty"`
	// PublicKey is one line of an authorized_keys file ("ssh-ed25519
	// AAAA… comment"); options before the key are refused.
	PublicKey string `json:"public_key"`
}

// MaxUserDataBytes bounds a server's user data, decoded.
const MaxUserDataBytes = 64 << 10

// GuestBootstrap is what a guest learns at its first boot, the way
// cloud-init expects it: its name, the SSH keys to authorize and the
// user's data. corrald puts it into the guest's spec; the agent writes it
// to a config drive.
type GuestBootstrap struct {
	Hostname string `json:"hostname"`
	// PublicKeys are the keypairs' keys in authorized_keys form.
	PublicKeys []string `json:"public_keys,omitempty"`
	// UserData is the user data as given (a #cloud-config document, a
	// script...), decoded from base64.
	UserData []byte `json:"user_data,omitempty"`
}

// HostRoute is a static route a subnet hands to its guests (DHCP option
// 121 and the config drive's network-config).
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}
