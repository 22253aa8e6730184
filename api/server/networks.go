package server

import "github.com/labstack/echo/v4"

// networkRoutes registers networks, subnets, ports and security groups
// (issue 5).
func (s *Server) networkRoutes(g *echo.Group) {}
