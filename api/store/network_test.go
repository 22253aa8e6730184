package store_test

import (
	"testing"

	"github.com/corral-cloud/corral/api/store/storetest"
)

func TestSQLiteNetwork(t *testing.T)   { storetest.RunNetwork(t, openSQLite) }
func TestPostgresNetwork(t *testing.T) { storetest.RunNetwork(t, openPostgres) }
