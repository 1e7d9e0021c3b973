//go:build !unix

package store

import "os"

// mapStart does not map here: the view reads with pread.
func mapStart(*os.File, int) []byte { return nil }

func unmap([]byte) {}
