package server

import (
	"context"
	"os"
	"time"

	"errors"
	"github.com/corral-cloud/corral/api/store"
	"net/http"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

func (s *Server) imageRoutes(g *echo.Group) {
	st := s.store
	g.POST("/images", createHandler(s, adminOnly, func(_ echo.Context, in *types.ImageCreate) error {
		return first(checkName("name", in.Name, maxNameLen), checkOneOf("disk_format", in.DiskFormat, "qcow2", "raw"),
			checkRange("min_disk_gib", in.MinDiskGiB, 0, maxDiskGiB), checkDescription(in.Description))
	}, st.CreateImage))
	g.GET("/images", listHandler(catalogRead, func(echo.Context) map[string]func(string) (string, error) {
		return map[string]func(string) (string, error){"status": nil}
	}, st.ListImages))
	g.GET("/images/:id", showHandler(catalogRead, st.GetImage))
	g.PATCH("/images/:id", patchHandler(s, func(in *types.ImageUpdate) error {
		if in.MinDiskGiB != nil {
			if err := checkRange("min_disk_gib", *in.MinDiskGiB, 0, maxDiskGiB); err != nil {
				return err
			}
		}
		return checkNameDesc(in.Name, in.Description)
	}, st.UpdateImage))
	g.DELETE("/images/:id", s.deleteHandler(func(c echo.Context, id string, rev int64) error {
		img, err := st.DeleteImage(c.Request().Context(), id, rev)
		if err != nil {
			return err
		}
		if err := s.images.remove(img.ID); err != nil {
			s.log.Error("remove image data", "image", img.ID, "error", err)
		}
		return nil
	}))
	g.PUT("/images/:id/file", s.uploadImage)
	g.GET("/images/:id/file", s.downloadImage)
}

// uploadStaleAfter is how long an upload may hold an image before another
// request may take it over (its corrald died mid-upload).
const uploadStaleAfter = 15 * time.Minute

// uploadImage streams the request body into the image store. An image's
// data is written once: an active image is immutable (its checksum is what
// hosts verify their cached copies against). qemu-img checks the data
// before it is accepted (checkImageData): its format must be the declared
// one, and a qcow2 must stand alone.
func (s *Server) uploadImage(c echo.Context) error {
	if err := allow(c, adminOnly...); err != nil {
		return err
	}
	ctx := c.Request().Context()
	img, err := s.store.GetImage(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	id := img.ID
	setResource(c, id)
	switch err := s.store.BeginImageUpload(ctx, id, uploadStaleAfter); {
	case errors.Is(err, store.ErrStale) && img.Status == types.ImageActive:
		return types.Errorf(types.CodeConflict, "image %s already has data (sha256 %s); create a new image", id, img.SHA256)
	case errors.Is(err, store.ErrStale):
		return types.Errorf(types.CodeConflict, "image %s is being uploaded by another request", id)
	case err != nil:
		return err
	}
	// From here on the upload is ours; whatever fails puts the image back
	// to queued and leaves no data behind, even if the client has gone.
	bg := context.WithoutCancel(ctx)
	fail := func(err error) error {
		s.images.remove(id)
		if aerr := s.store.AbortImageUpload(bg, id, img.UpdatedAt); aerr != nil {
			s.log.Error("abort image upload", "image", id, "error", aerr)
		}
		return err
	}
	declared := img.DiskFormat
	size, sum, err := s.images.put(id, s.uploadBody(c), s.cfg.MaxImageBytes, func(path string, n int64) error {
		if n == 0 {
			return types.FieldError("body", "the upload is empty; send the image's data")
		}
		return checkImageData(ctx, s.cfg.QemuImg, declared, path)
	})
	if errors.Is(err, errTooLarge) {
		return fail(types.Errorf(types.CodeBodyTooLarge, "image is over the %d-byte limit", s.cfg.MaxImageBytes).
			WithDetail("limit", s.cfg.MaxImageBytes))
	}
	if err != nil {
		return fail(err)
	}
	img, err = s.store.SetImageData(bg, id, size, sum)
	if err != nil {
		return fail(err)
	}
	return object(c, http.StatusOK, img.Revision, img)
}

// downloadImage serves an active image's data, with ranges, and its digest
// in the X-Checksum-Sha256 header.
func (s *Server) downloadImage(c echo.Context) error {
	if err := allow(c, catalogRead...); err != nil {
		return err
	}
	img, err := s.store.GetImage(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if img.Status != types.ImageActive {
		return types.Errorf(types.CodeImageNotActive, "image %s has no data yet", img.ID)
	}
	p, err := s.images.path(img.ID)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		// Replicas must share the image directory (--image-dir).
		return types.Errorf(types.CodeUnavailable, "the data of image %s is not in this corrald's image store %s", img.ID, s.images.dir)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c.Response().Header().Set("X-Checksum-Sha256", img.SHA256)
	http.ServeContent(s.downloadWriter(c), c.Request(), "", fi.ModTime(), f)
	return nil
}
