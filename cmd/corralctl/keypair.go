package main

import (
	"context"
	"encoding/base64"
	"os"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

// This file holds guest bootstrap (issue 11): keypairs.

var keypairKind = &kind[types.Keypair]{
	name: "keypair", plural: "keypairs", res: func(c *client.Client) client.Collection { return c.Keypairs().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "PROJECT", "TYPE", "FINGERPRINT"},
	row: func(k types.Keypair, n *names) []string {
		return []string{k.ID, k.Name, n.project(k.ProjectID), k.Type, k.Fingerprint}
	},
	filters: []filter{{flag: "project", param: "project", usage: "only keypairs of this project (ID or name)"}},
}

func (a *app) keypairCommand() *cobra.Command {
	k := keypairKind
	var in types.KeypairCreate
	var file, key string
	create := &cobra.Command{
		Use:   "create NAME --public-key-file ~/.ssh/id_ed25519.pub [--project PROJECT]",
		Short: "Import an SSH public key for a project's servers",
		Args:  cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return usagef("--public-key-file: %v", err)
				}
				in.PublicKey = string(b)
			}
			if in.PublicKey == "" {
				return usagef("give --public-key-file FILE or --public-key KEY")
			}
			_, err := a.createObject(ctx, k.col(a), in, key)
			return err
		}),
	}
	f := create.Flags()
	f.StringVar(&file, "public-key-file", "", "file holding the public key (one authorized_keys line)")
	f.StringVar(&in.PublicKey, "public-key", "", "the public key itself (\"ssh-ed25519 AAAA… comment\")")
	f.StringVar(&in.Project, "project", "", "project (ID or name); members use their own")
	addIdempotencyFlag(create, &key)
	return group("keypair", "Manage SSH keypairs that servers' guests authorize",
		listCommand(a, k), showCommand(a, k), create, deleteCommand(a, k, true))
}

// addBootstrapFlags adds --key-name and --user-data-file to a server
// create; the returned function fills in the request before it is sent.
func addBootstrapFlags(cmd *cobra.Command, in *types.ServerCreate) func() error {
	var keys []string
	var userData string
	fl := cmd.Flags()
	fl.StringSliceVar(&keys, "key-name", nil, "keypair (ID or name) whose key the guest authorizes; repeat for several")
	fl.StringVar(&userData, "user-data-file", "", "cloud-init user data (a #cloud-config or a script; sent base64-encoded)")
	return func() error {
		switch len(keys) {
		case 0:
		case 1:
			in.KeyName = keys[0]
		default:
			in.Keypairs = keys
		}
		if userData != "" {
			b, err := os.ReadFile(userData)
			if err != nil {
				return usagef("--user-data-file: %v", err)
			}
			in.UserData = base64.StdEncoding.EncodeToString(b)
		}
		return nil
	}
}
