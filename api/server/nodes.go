package server

import "github.com/labstack/echo/v4"

// nodeRoutes registers bare-metal nodes (issue 6).
func (s *Server) nodeRoutes(g *echo.Group) {}
