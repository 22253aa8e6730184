package store_test

import (
	"testing"

	"github.com/corral-cloud/corral/api/store/storetest"
)

func TestNodesSQLite(t *testing.T)   { storetest.RunNodes(t, openSQLite) }
func TestNodesPostgres(t *testing.T) { storetest.RunNodes(t, openPostgres) }
