// Package deps holds no code: its test checks the import rules of the whole module.
package deps
