// Command corralctl is the command-line client of Corral's /v1 API, for
// people and for provisioning scripts.
//
// Every resource has a command with list, show, create, update (where the
// API allows a change) and delete:
//
//	corralctl region create dc1
//	corralctl zone create rack1 --region dc1
//	corralctl aggregate create general --traits ssd,avx2 --cpu-allocation-ratio 4
//	corralctl flavor create m1.small --vcpus 2 --ram-mib 2048 --disk-gib 20
//	corralctl image create debian-12 --disk-format qcow2 --file debian-12.qcow2
//	corralctl project create games
//	corralctl server create web-1 --kind vm --flavor m1.small --image debian-12 --project games --wait
//	corralctl server list --project games --all -o json
//	corralctl server list -o wide
//	corralctl server stop web-1 --wait
//	corralctl server update web-1 --desired-state stopped --if-match 3
//	corralctl host update hv-17 --state maintenance
//	corralctl token create ci --role member --project games --expires-in 720h
//	corralctl audit list --resource srv-…
//	corralctl version
//
// Objects are named by ID or by name. Catalogue objects and hosts are
// found by name by corrald itself; a server or token named by something
// that is not its ID is looked up by listing, and a name that matches
// several objects is an error that lists their IDs.
//
// # Connection settings
//
// The endpoint and the token come, in this order of precedence, from
//
//  1. the flags --endpoint, --token and --token-file;
//  2. the environment variables CORRAL_ENDPOINT, CORRAL_TOKEN and
//     CORRAL_TOKEN_FILE;
//  3. the configuration file, a JSON object with the keys "endpoint",
//     "token" and "token_file", read from --config (or CORRAL_CONFIG), or
//     by default from $XDG_CONFIG_HOME/corral/config.json, or
//     ~/.config/corral/config.json when XDG_CONFIG_HOME is unset;
//  4. the default endpoint http://127.0.0.1:8440, and no token.
//
// The first of these levels that gives a token or a token file decides the
// credential; within one level a token wins over a token file. A relative
// token_file in the configuration file is relative to the file's directory.
// A missing default configuration file is not an error; a missing file named
// by --config is.
//
// # Output
//
// --output table (the default) prints lists as aligned columns and single
// objects as "key: value" lines; --output wide adds columns. Tables show
// the names of projects, flavors, hosts, nodes and zones (racks) where the
// API gives IDs, listing each kind once per invocation. --output json prints
// the API's JSON, indented, and --output yaml the same as YAML: an object
// for show, create and update, and for list the array of items (of every
// page with --all). delete prints "deleted <kind> <name>" for each object
// in table mode and nothing in json or yaml mode. Messages meant for people,
// such as a note that more pages exist, go to standard error.
//
// # Waiting
//
// server create, start, stop, update --desired-state and delete
// take --wait: corralctl returns when the server is active, stopped or gone,
// printing each change of state to standard error, and exits 1 with the
// server's fault (or its bare-metal node's last error) when it ends in
// error, or when --wait-timeout (default 20 minutes) runs out.
//
// # Retries and idempotency
//
// Reads, and creations sent with an Idempotency-Key, are retried a few
// times when corrald cannot be reached or answers 502, 503 or 504. Every
// create sends a random Idempotency-Key made for the invocation, so that
// such a retry never creates two objects; --idempotency-key K sends K
// instead, so that a script that runs the same command again after a
// failure gets the object the first run created (corrald keeps keys for a
// day, per token). Token creation sends no key, because corrald would keep
// the secret in its record of the answer.
//
// # Errors and exit status
//
// An error of the API is printed to standard error as
//
//	corralctl: <code>: <message>
//
// followed by its details, one per line (such as the field at fault, or the
// objects that keep a flavor in use). The exit status is 0 on success, 1
// for an error of the API or any other failure, and 2 for a usage error:
// an unknown command or flag, a missing argument or a bad flag value.
//
// --timeout bounds each request (0 means no limit). An image upload is
// bounded only while waiting for corrald's answer after the data was sent,
// as its duration grows with the image.
package main
