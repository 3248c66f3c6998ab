# make build            the static-pie release binary
# make install DESTDIR=... PREFIX=/usr   binary, man pages, completions, unit
# make docs             regenerate man pages and completions from the clap definitions,
#                       and the README's table of states from src/recovery/states.rs
#                       (a build with the docs feature: the node binary does not carry the generator)
PREFIX ?= /usr
DESTDIR ?=
BIN := target/x86_64-unknown-linux-gnu/release/upgrade-recovery

.PHONY: build install docs test
build:
	scripts/build-static.sh

docs:
	cargo run --quiet --features docs -- generate-docs packaging --readme README.md

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/upgrade-recovery
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 packaging/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 0644 packaging/completions/upgrade-recovery.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/upgrade-recovery
	install -D -m 0644 packaging/completions/_upgrade-recovery $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_upgrade-recovery
	install -D -m 0644 packaging/completions/upgrade-recovery.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/upgrade-recovery.fish
	install -D -m 0644 packaging/upgrade-recovery-resume.service $(DESTDIR)$(PREFIX)/lib/systemd/system/upgrade-recovery-resume.service

test:
	scripts/test.sh
