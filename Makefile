# Build and install spk the way a distribution package does:
#
#   make                                    # cargo build --release --workspace --locked
#   make install DESTDIR=/tmp/pkg PREFIX=/usr
#
# `install` never compiles what is already built (packagers build as a user, then install under
# fakeroot); it builds only when the binaries are missing. PROFILE=debug installs the debug build
# (the tests do). Files under /etc are configuration: a spk.toml or conf.d file that was changed
# is kept and the new default lands beside it as FILE.new.
#
# The hooks (hooks/*.hook and their helper scripts) go to $(DATADIR)/spk/hooks. spkd reads
# ROOT/usr/share/spk/hooks of the root it manages, so on a SmechOS system (PREFIX=/usr) they
# are where it looks; a /usr/local install only carries them along.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
SYSCONFDIR  ?= /etc
DBUSDIR     ?= $(DATADIR)/dbus-1
POLKITDIR   ?= $(DATADIR)/polkit-1/actions
DESTDIR     ?=

CARGO       ?= cargo
PROFILE     ?= release
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),target)
PROFILE_FLAG = $(if $(filter release,$(PROFILE)),--release,$(if $(filter debug dev,$(PROFILE)),,--profile $(PROFILE)))
OUT          = $(TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
# The spkctl that writes the shell completions; override when cross-compiling. The man pages
# are written by hand, in man/.
GEN_SPKCTL  ?= $(OUT)/spkctl

INSTALL     ?= install
# Installed paths written into the init scripts, the activation file and the desktop file.
SUBST = sed -e 's|/usr/sbin/spkd|$(SBINDIR)/spkd|g' \
            -e 's|/usr/bin/spkctl|$(BINDIR)/spkctl|g' \
            -e 's|/usr/bin/spk-notifier|$(BINDIR)/spk-notifier|g' \
            -e 's|/usr/share/spk/hooks|$(DATADIR)/spk/hooks|g'
HOOKS        = $(wildcard hooks/*.hook)
HOOK_HELPERS = $(filter-out $(HOOKS),$(wildcard hooks/*))

.PHONY: all build install uninstall check clean

MAN1 = man/spkctl.1 man/spk-notifier.1 man/spk-publish.1
MAN5 = man/spk.toml.5 man/spk-hooks.5
MAN8 = man/spkd.8

all: build $(OUT)/completions/spkctl.bash

build:
	$(CARGO) build --workspace --locked $(PROFILE_FLAG)

$(OUT)/spkd $(OUT)/spkctl &:
	$(CARGO) build --workspace --locked $(PROFILE_FLAG)

$(OUT)/completions/spkctl.bash: $(OUT)/spkctl
	rm -rf $(OUT)/completions && mkdir -p $(OUT)/completions
	for shell in bash zsh fish; do \
	  $(GEN_SPKCTL) generate-completions $$shell > $(OUT)/completions/spkctl.$$shell || { \
	    echo "error: '$(GEN_SPKCTL) generate-completions $$shell' failed" >&2; \
	    rm -rf $(OUT)/completions; exit 1; }; \
	done

# Install SRC as DEST with MODE, unless DEST exists and was changed: then install it as DEST.new.
define install_config
	@if [ -e "$(2)" ] && ! cmp -s "$(1)" "$(2)"; then \
	  echo "kept $(2); the new default is $(2).new"; \
	  $(INSTALL) -m $(3) "$(1)" "$(2).new"; \
	else \
	  echo '$(INSTALL) -m $(3) $(1) $(2)'; \
	  $(INSTALL) -m $(3) "$(1)" "$(2)"; \
	fi
endef

install: $(OUT)/spkd $(OUT)/spkctl $(OUT)/completions/spkctl.bash
	$(INSTALL) -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(SBINDIR)" \
	  "$(DESTDIR)$(SYSCONFDIR)/init.d" "$(DESTDIR)$(SYSCONFDIR)/conf.d" \
	  "$(DESTDIR)$(SYSCONFDIR)/spk" "$(DESTDIR)$(SYSCONFDIR)/spk/keys" \
	  "$(DESTDIR)$(DBUSDIR)/system.d" "$(DESTDIR)$(DBUSDIR)/system-services" \
	  "$(DESTDIR)$(DBUSDIR)/interfaces" "$(DESTDIR)$(POLKITDIR)" \
	  "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man5" "$(DESTDIR)$(MANDIR)/man8" \
	  "$(DESTDIR)$(DATADIR)/spk/hooks" \
	  "$(DESTDIR)$(DATADIR)/bash-completion/completions" \
	  "$(DESTDIR)$(DATADIR)/zsh/site-functions" \
	  "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d"
	$(INSTALL) -m 0755 $(OUT)/spkctl "$(DESTDIR)$(BINDIR)/spkctl"
	$(INSTALL) -m 0755 $(OUT)/spkd "$(DESTDIR)$(SBINDIR)/spkd"
	if [ -x $(OUT)/spk-notifier ]; then \
	  $(INSTALL) -m 0755 $(OUT)/spk-notifier "$(DESTDIR)$(BINDIR)/spk-notifier"; fi
	if [ -x $(OUT)/spk-publish ]; then \
	  $(INSTALL) -m 0755 $(OUT)/spk-publish "$(DESTDIR)$(BINDIR)/spk-publish"; fi
	$(SUBST) openrc/spkd.initd > "$(DESTDIR)$(SYSCONFDIR)/init.d/spkd"
	$(SUBST) openrc/spk-boot-check.initd > "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-boot-check"
	$(SUBST) openrc/spk-offline-update.initd > "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-offline-update"
	chmod 0755 "$(DESTDIR)$(SYSCONFDIR)/init.d/spkd" "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-boot-check" \
	  "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-offline-update"
	$(call install_config,openrc/spkd.confd,$(DESTDIR)$(SYSCONFDIR)/conf.d/spkd,0644)
	$(call install_config,openrc/spk-boot-check.confd,$(DESTDIR)$(SYSCONFDIR)/conf.d/spk-boot-check,0644)
	$(call install_config,openrc/spk-offline-update.confd,$(DESTDIR)$(SYSCONFDIR)/conf.d/spk-offline-update,0644)
	$(call install_config,etc/spk.toml,$(DESTDIR)$(SYSCONFDIR)/spk/spk.toml,0644)
	$(INSTALL) -m 0644 dbus/xyz.smech.Spk1.conf "$(DESTDIR)$(DBUSDIR)/system.d/xyz.smech.Spk1.conf"
	$(SUBST) dbus/xyz.smech.Spk1.service > "$(DESTDIR)$(DBUSDIR)/system-services/xyz.smech.Spk1.service"
	chmod 0644 "$(DESTDIR)$(DBUSDIR)/system-services/xyz.smech.Spk1.service"
	$(INSTALL) -m 0644 dbus/xyz.smech.Spk1.xml "$(DESTDIR)$(DBUSDIR)/interfaces/xyz.smech.Spk1.xml"
	$(INSTALL) -m 0644 dbus/xyz.smech.spk.policy "$(DESTDIR)$(POLKITDIR)/xyz.smech.spk.policy"
	if [ -f applet/spk-notifier.desktop ]; then \
	  $(INSTALL) -d -m 0755 "$(DESTDIR)$(SYSCONFDIR)/xdg/autostart" && \
	  $(SUBST) applet/spk-notifier.desktop > "$(DESTDIR)$(SYSCONFDIR)/xdg/autostart/spk-notifier.desktop" && \
	  chmod 0644 "$(DESTDIR)$(SYSCONFDIR)/xdg/autostart/spk-notifier.desktop"; fi
	for f in $(HOOKS); do \
	  $(SUBST) $$f > "$(DESTDIR)$(DATADIR)/spk/hooks/$${f#hooks/}" && \
	  chmod 0644 "$(DESTDIR)$(DATADIR)/spk/hooks/$${f#hooks/}" || exit 1; done
	$(INSTALL) -m 0755 $(HOOK_HELPERS) "$(DESTDIR)$(DATADIR)/spk/hooks/"
	$(INSTALL) -m 0644 $(MAN1) "$(DESTDIR)$(MANDIR)/man1/"
	$(INSTALL) -m 0644 $(MAN5) "$(DESTDIR)$(MANDIR)/man5/"
	$(INSTALL) -m 0644 $(MAN8) "$(DESTDIR)$(MANDIR)/man8/"
	$(INSTALL) -m 0644 $(OUT)/completions/spkctl.bash "$(DESTDIR)$(DATADIR)/bash-completion/completions/spkctl"
	$(INSTALL) -m 0644 $(OUT)/completions/spkctl.zsh "$(DESTDIR)$(DATADIR)/zsh/site-functions/_spkctl"
	$(INSTALL) -m 0644 $(OUT)/completions/spkctl.fish "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/spkctl.fish"

# Removes what `install` placed, except configuration (/etc/spk, /etc/conf.d).
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/spkctl" "$(DESTDIR)$(SBINDIR)/spkd" "$(DESTDIR)$(BINDIR)/spk-notifier" \
	  "$(DESTDIR)$(BINDIR)/spk-publish" \
	  "$(DESTDIR)$(SYSCONFDIR)/init.d/spkd" "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-boot-check" \
	  "$(DESTDIR)$(SYSCONFDIR)/init.d/spk-offline-update" \
	  "$(DESTDIR)$(DBUSDIR)/system.d/xyz.smech.Spk1.conf" \
	  "$(DESTDIR)$(DBUSDIR)/system-services/xyz.smech.Spk1.service" \
	  "$(DESTDIR)$(DBUSDIR)/interfaces/xyz.smech.Spk1.xml" \
	  "$(DESTDIR)$(POLKITDIR)/xyz.smech.spk.policy" \
	  "$(DESTDIR)$(SYSCONFDIR)/xdg/autostart/spk-notifier.desktop" \
	  $(patsubst man/%,"$(DESTDIR)$(MANDIR)/man1/%",$(MAN1)) \
	  $(patsubst man/%,"$(DESTDIR)$(MANDIR)/man5/%",$(MAN5)) \
	  $(patsubst man/%,"$(DESTDIR)$(MANDIR)/man8/%",$(MAN8)) \
	  $(patsubst hooks/%,"$(DESTDIR)$(DATADIR)/spk/hooks/%",$(wildcard hooks/*)) \
	  "$(DESTDIR)$(DATADIR)/bash-completion/completions/spkctl" \
	  "$(DESTDIR)$(DATADIR)/zsh/site-functions/_spkctl" \
	  "$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/spkctl.fish"
	-rmdir "$(DESTDIR)$(DATADIR)/spk/hooks" "$(DESTDIR)$(DATADIR)/spk" 2>/dev/null

check:
	$(CARGO) test --workspace --locked

clean:
	$(CARGO) clean
