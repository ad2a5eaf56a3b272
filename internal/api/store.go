package api

import (
	"context"
	"path/filepath"
)

// The store itself: a backup while the node runs, and the passphrase
// that seals it. Both work with or without a daemon.

// BackupParams are the params of "backup": the file to write (an
// absolute path: the daemon's working directory is not the caller's),
// and the passphrase to encrypt it under: the store's own when it is
// sealed, else one chosen for the backup.
type BackupParams struct {
	Path       string `json:"path"`
	Passphrase string `json:"passphrase"`
}

func (p BackupParams) check() error {
	if !filepath.IsAbs(p.Path) {
		return invalid("path %q: give an absolute path", p.Path)
	}
	if p.Passphrase == "" {
		return invalid("a backup is encrypted under a passphrase: give one")
	}
	return nil
}

// BackupResult is the answer of "backup".
type BackupResult struct {
	Path string `json:"path"`
}

// PassphraseParams are the params of "passphrase": the present
// passphrase (empty when the store is not sealed) and the new one
// (empty: unseal).
type PassphraseParams struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// PassphraseResult is the answer of "passphrase".
type PassphraseResult struct {
	Sealed bool `json:"sealed"`
}

func (s *Server) backup(_ context.Context, p BackupParams) (BackupResult, error) {
	return BackupResult{Path: p.Path}, s.n.Backup(p.Path, []byte(p.Passphrase))
}

func (s *Server) passphrase(_ context.Context, p PassphraseParams) (PassphraseResult, error) {
	if err := s.n.ChangePassphrase([]byte(p.Current), []byte(p.New)); err != nil {
		return PassphraseResult{}, err
	}
	return PassphraseResult{Sealed: p.New != ""}, nil
}

func (c *Client) Backup(ctx context.Context, p BackupParams) (BackupResult, error) {
	return call[BackupResult](ctx, c, "backup", p)
}

func (c *Client) ChangePassphrase(ctx context.Context, p PassphraseParams) (PassphraseResult, error) {
	return call[PassphraseResult](ctx, c, "passphrase", p)
}
