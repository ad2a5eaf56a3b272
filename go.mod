module github.com/p2pmsg/p2pmsg

go 1.26.0

require golang.org/x/crypto v0.59.0

require (
	github.com/mattn/go-sqlite3 v1.14.53 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
