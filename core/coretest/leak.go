// Package coretest holds test helpers shared by the tests of several
// packages, the way net/http/httptest does; only tests import it.
package coretest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LeakForms is every form of a secret that must never be seen outside its
// sealed column: plain, HTTP Basic (base64 of "key:"), base64 standard and
// URL-safe (first 16 characters, so a cut copy counts too), every character
// JSON \u-escaped, URL query-encoded, and a prefix of 12 characters.
func LeakForms(key string) map[string][]byte {
	var esc strings.Builder
	for _, r := range key {
		fmt.Fprintf(&esc, `\u%04x`, r)
	}
	return map[string][]byte{
		"plain":        []byte(key),
		"basic":        []byte(base64.StdEncoding.EncodeToString([]byte(key + ":"))),
		"basic-url":    []byte(base64.URLEncoding.EncodeToString([]byte(key + ":"))),
		"base64":       []byte(base64.StdEncoding.EncodeToString([]byte(key))[:16]),
		"base64-url":   []byte(base64.URLEncoding.EncodeToString([]byte(key))[:16]),
		"json-escaped": []byte(esc.String()),
		"url-encoded":  []byte(url.QueryEscape(key)),
		"prefix-12":    []byte(key[:min(12, len(key))]),
	}
}

// FindLeaks names every form of key found in data, as "where: form".
func FindLeaks(where string, data []byte, key string) []string {
	var out []string
	for name, f := range LeakForms(key) {
		if bytes.Contains(data, f) {
			out = append(out, where+": "+name)
		}
	}
	sort.Strings(out)
	return out
}

// FindLeaksInDir scans every file under dir and returns the leaks found and
// how many files were read.
func FindLeaksInDir(dir, key string) (leaks []string, files int, err error) {
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(dir, p)
		leaks = append(leaks, FindLeaks("file "+rel, b, key)...)
		return nil
	})
	return leaks, files, err
}
