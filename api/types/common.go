package types

import "time"

// Meta is embedded in every stored resource.
type Meta struct {
	// ID is assigned by corrald: a kind prefix and a time-ordered suffix.
	ID string `json:"id"`
	// Revision increases by one on every change. Send it back in If-Match
	// to make an update or delete conditional (412 when it moved on).
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// List is the page returned by every list endpoint. Pass NextCursor back as
// the cursor query parameter for the next page; it is empty on the last page.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Kinds of server.
const (
	KindVM        = "vm"
	KindBaremetal = "baremetal"
)

// Roles of a token.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleMember manages the servers of one project and reads the catalogue.
	RoleMember = "member"
	// RoleReader reads; a reader bound to a project sees only its servers.
	RoleReader = "reader"
	// RoleRegistrar may only register hosts (the credential Ansible puts on
	// new compute hosts).
	RoleRegistrar = "registrar"
	// RoleAgent is a host's own credential, issued at registration; it may
	// only heartbeat and read what its host needs.
	RoleAgent = "agent"
)

// GetMeta returns the metadata; every resource embedding Meta has it.
func (m Meta) GetMeta() Meta { return m }
