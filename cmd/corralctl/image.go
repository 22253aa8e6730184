package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/corral-cloud/corral/api/client"
	"os"

	"github.com/corral-cloud/corral/api/types"
	"github.com/spf13/cobra"
)

var imageKind = &kind[types.Image]{
	name: "image", plural: "images", res: func(c *client.Client) client.Collection { return c.Images().Collection }, lookup: byAPI,
	headers: []string{"ID", "NAME", "FORMAT", "STATUS", "SIZE", "MIN-DISK-GIB"},
	row: func(i types.Image, n *names) []string {
		size := ""
		if i.Status == types.ImageActive {
			size = byteSize(i.SizeBytes)
		}
		return []string{i.ID, i.Name, i.DiskFormat, i.Status, size, itoa(i.MinDiskGiB)}
	},
	filters: []filter{{flag: "status", param: "status", usage: "only images in this status: queued or active"}},
}

func (a *app) imageCommand() *cobra.Command {
	k := imageKind
	var in types.ImageCreate
	var key, file string
	create := &cobra.Command{
		Use:   "create NAME --disk-format qcow2|raw [--file PATH]",
		Short: "Create an image, and upload its data with --file",
		Long: `Create an image record and, with --file, stream the file to corrald as its
data. Without --file the image stays queued until "corralctl image upload".`,
		Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			in.Name = args[0]
			if file == "" {
				_, err := a.createObject(ctx, k.col(a), in, key)
				return err
			}
			// Open the file first, so that a wrong path creates nothing.
			f, err := openImageFile(file)
			if err != nil {
				return err
			}
			defer f.Close()
			rerun := key != ""
			if !rerun {
				key = newIdempotencyKey()
			}
			raw, err := a.api.create(ctx, k.col(a), in, key)
			if err != nil {
				return err
			}
			var img types.Image
			if err := json.Unmarshal(raw, &img); err != nil {
				return fmt.Errorf("read image: %w", err)
			}
			if rerun {
				// The same command may have run before with this key, and
				// corrald then answers with the image as first created:
				// look at it now, as its data can be written only once.
				if raw, err = a.api.get(ctx, k.col(a), img.ID); err != nil {
					return err
				}
				if err := json.Unmarshal(raw, &img); err != nil {
					return fmt.Errorf("read image: %w", err)
				}
				if img.Status == types.ImageActive {
					st, err := f.Stat()
					if err != nil {
						return err
					}
					if st.Size() != img.SizeBytes {
						return fmt.Errorf("image %s already has %d bytes of data, but %s has %d", img.ID, img.SizeBytes, file, st.Size())
					}
					a.notef("image %s already has its data, uploaded by an earlier run", img.ID)
					return a.printObject(raw)
				}
			}
			out, err := a.api.uploadImage(ctx, img.ID, f)
			if err != nil {
				return &hintError{err: err, hint: fmt.Sprintf("image %s was created without data; retry with: corralctl image upload %s %s",
					img.ID, img.ID, file)}
			}
			return a.printObject(out)
		}),
	}
	fl := create.Flags()
	fl.StringVar(&in.DiskFormat, "disk-format", "", "format of the data: qcow2 or raw")
	fl.Int64Var(&in.MinDiskGiB, "min-disk-gib", 0, "smallest root disk, in GiB, the image fits on")
	fl.StringVar(&in.Description, "description", "", "description")
	fl.StringVar(&file, "file", "", "upload this file as the image's data once the image is created")
	create.MarkFlagRequired("disk-format")
	addIdempotencyFlag(create, &key)

	upload := &cobra.Command{
		Use:   "upload ID|NAME PATH",
		Short: "Upload the data of a queued image",
		Long:  "Stream the file at PATH to corrald as the image's data. An image's data is written once.",
		Args:  cobra.ExactArgs(2),
		RunE: a.action(func(ctx context.Context, _ *cobra.Command, args []string) error {
			f, err := openImageFile(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			out, err := a.api.uploadImage(ctx, args[0], f)
			if err != nil {
				return err
			}
			return a.printObject(out)
		}),
	}

	var name, desc string
	var minDisk, rev int64
	update := &cobra.Command{
		Use: "update ID|NAME", Short: "Change an image", Args: cobra.ExactArgs(1),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			up := types.ImageUpdate{Name: optional(cmd, "name", name), MinDiskGiB: optional(cmd, "min-disk-gib", minDisk),
				Description: optional(cmd, "description", desc)}
			return updateObject(ctx, a, cmd, k, args[0], up, rev)
		}),
	}
	update.Flags().StringVar(&name, "name", "", "new name")
	update.Flags().Int64Var(&minDisk, "min-disk-gib", 0, "smallest root disk, in GiB, the image fits on")
	update.Flags().StringVar(&desc, "description", "", "new description")
	addIfMatchFlag(update, &rev)

	return group("image", "Manage disk images",
		listCommand(a, k), showCommand(a, k), create, upload, update, deleteCommand(a, k, true))
}

// openImageFile opens a regular file to upload.
func openImageFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}
