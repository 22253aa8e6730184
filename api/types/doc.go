// Package types holds Corral's /v1 wire types: the requests, responses and
// error body that corrald, corralctl, the agent and provisioning scripts
// exchange as JSON.
//
// The package imports only the standard library so that any client can use
// it. Fields are only ever added; a field never changes its meaning.
package types
