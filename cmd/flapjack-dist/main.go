// Command flapjack-dist builds the release archives (make dist): one per
// target, flapjack_<version>_<os>_<arch>.tar.gz (.zip for Windows), and a
// SHA256SUMS file. The builds are reproducible: -trimpath, no VCS stamping
// (the version and commit are linked in instead), and archive entries with a
// fixed time, owner and mode, so two runs on one commit give the same bytes.
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// defaultTargets are the platforms flapjack supports.
const defaultTargets = "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64,windows/arm64"

func main() {
	version := flag.String("version", "", "the version to stamp and name the archives by (required)")
	commit := flag.String("commit", "unknown", "the commit to stamp")
	out := flag.String("out", "dist", "output directory")
	targets := flag.String("targets", defaultTargets, "comma-separated os/arch list")
	epoch := flag.Int64("epoch", 0, "the archive entries' modification time, unix seconds (SOURCE_DATE_EPOCH)")
	flag.Parse()
	if err := run(*version, *commit, *out, strings.Split(*targets, ","), time.Unix(*epoch, 0).UTC()); err != nil {
		fmt.Fprintln(os.Stderr, "flapjack-dist:", err)
		os.Exit(1)
	}
}

func run(version, commit, out string, targets []string, mtime time.Time) error {
	if version == "" || strings.ContainsAny(version, "/\\ ") {
		return fmt.Errorf("-version %q: want a version such as v1.2.3", version)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var sums []string
	for _, t := range targets {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(t), "/")
		if !ok {
			return fmt.Errorf("target %q: want os/arch", t)
		}
		bin, err := build(version, commit, goos, goarch)
		if err != nil {
			return err
		}
		name, data, err := archive(version, goos, goarch, bin, mtime)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		sums = append(sums, hex.EncodeToString(sum[:])+"  "+name)
		fmt.Println(name)
	}
	slices.Sort(sums)
	return os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(strings.Join(sums, "\n")+"\n"), 0o644)
}

// build compiles flapjack for one target and returns the binary.
func build(version, commit, goos, goarch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "flapjack-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "flapjack")
	ldflags := "-s -w -buildid= -X main.stampedVersion=" + version + " -X main.stampedCommit=" + commit
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, "./cmd/flapjack")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building %s/%s: %w", goos, goarch, err)
	}
	return os.ReadFile(bin)
}

// archive packs the binary with the README and licence files, if any.
func archive(version, goos, goarch string, bin []byte, mtime time.Time) (string, []byte, error) {
	base := fmt.Sprintf("flapjack_%s_%s_%s", version, goos, goarch)
	exe := "flapjack"
	if goos == "windows" {
		exe += ".exe"
	}
	files := []struct {
		name string
		data []byte
		mode int64
	}{{exe, bin, 0o755}}
	for _, extra := range []string{"README.md", "LICENSE"} {
		if data, err := os.ReadFile(extra); err == nil {
			files = append(files, struct {
				name string
				data []byte
				mode int64
			}{extra, data, 0o644})
		}
	}
	var buf bytes.Buffer
	if goos == "windows" {
		zw := zip.NewWriter(&buf)
		for _, f := range files {
			h := &zip.FileHeader{Name: base + "/" + f.name, Method: zip.Deflate, Modified: mtime}
			h.SetMode(os.FileMode(f.mode))
			w, err := zw.CreateHeader(h)
			if err != nil {
				return "", nil, err
			}
			if _, err := w.Write(f.data); err != nil {
				return "", nil, err
			}
		}
		if err := zw.Close(); err != nil {
			return "", nil, err
		}
		return base + ".zip", buf.Bytes(), nil
	}
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", nil, err
	}
	gz.ModTime = mtime // the header's time is fixed too
	tw := tar.NewWriter(gz)
	for _, f := range files {
		h := &tar.Header{Name: base + "/" + f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime,
			Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return "", nil, err
		}
		if _, err := io.Copy(tw, bytes.NewReader(f.data)); err != nil {
			return "", nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return "", nil, err
	}
	if err := gz.Close(); err != nil {
		return "", nil, err
	}
	return base + ".tar.gz", buf.Bytes(), nil
}
