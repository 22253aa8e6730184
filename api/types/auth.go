package types

import "time"

// Token is an API credential. Only a hash of its secret is stored; the
// secret is returned once, in TokenCreated.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	ProjectID string     `json:"project_id,omitempty"`
	HostID    string     `json:"host_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// TokenCreate creates a token. ExpiresInSeconds defaults to 30 days;
// Project is required for members.
type TokenCreate struct {
	Name             string `json:"name"`
	Role             string `json:"role"`
	Project          string `json:"project,omitempty"`
	ExpiresInSeconds int64  `json:"expires_in_seconds,omitempty"`
}

// TokenCreated is the answer to a token creation; Secret is shown only here.
type TokenCreated struct {
	Token
	Secret string `json:"secret"`
}

// AuditEntry records one mutating call.
type AuditEntry struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	TokenID    string    `json:"token_id"`
	Role       string    `json:"role"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	ResourceID string    `json:"resource_id,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	// Count is how many calls the entry stands for: 1, or more for refused
	// calls that were aggregated (the same caller, route and status within
	// a short window) so that a flood of refusals cannot flood the log.
	Count int `json:"count"`
}
