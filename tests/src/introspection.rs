//! Normalized D-Bus introspection, to compare the running daemon with `dbus/xyz.smech.Spk1.xml`.
//!
//! An interface is reduced to sorted lines — one per method (with argument names, types and
//! directions), signal (with arguments) and property (with type and access) — so two documents
//! compare as sets and a mismatch prints as a readable diff. Annotations and documentation are
//! ignored; only interfaces whose name starts with a given prefix are kept.

use std::collections::BTreeSet;

/// The normalized lines of every interface named `prefix*` in `xml` (any nesting of nodes).
pub fn normalize(xml: &str, prefix: &str) -> Result<BTreeSet<String>, String> {
    let doc = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .map_err(|e| format!("invalid XML: {e}"))?;
    let mut lines = BTreeSet::new();
    for iface in doc.descendants().filter(|n| n.has_tag_name("interface")) {
        let iname = iface.attribute("name").unwrap_or_default();
        if !iname.starts_with(prefix) {
            continue;
        }
        lines.insert(iname.to_string());
        for member in iface.children().filter(|n| n.is_element()) {
            let name = member.attribute("name").unwrap_or_default();
            match member.tag_name().name() {
                "method" => {
                    let args = args(member, "in");
                    lines.insert(format!("{iname} method {name}({args})"));
                }
                "signal" => {
                    let args = args(member, "");
                    lines.insert(format!("{iname} signal {name}({args})"));
                }
                "property" => {
                    let ty = member.attribute("type").unwrap_or_default();
                    let access = member.attribute("access").unwrap_or_default();
                    lines.insert(format!("{iname} property {name}: {ty} ({access})"));
                }
                _ => {}
            }
        }
    }
    Ok(lines)
}

/// `dir type name, ...` of the `<arg>` children; `default_dir` fills a missing direction
/// (methods default to `in`; signal arguments carry none worth comparing).
fn args(member: roxmltree::Node<'_, '_>, default_dir: &str) -> String {
    member
        .children()
        .filter(|n| n.has_tag_name("arg"))
        .map(|a| {
            let ty = a.attribute("type").unwrap_or_default();
            let name = a.attribute("name").unwrap_or_default();
            let dir = if default_dir.is_empty() {
                ""
            } else {
                a.attribute("direction").unwrap_or(default_dir)
            };
            format!("{dir} {ty} {name}").trim().to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines present in only one of the two sets, marked `-` (only in `expected`) and `+` (only
/// in `actual`).
pub fn diff(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = expected
        .difference(actual)
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(actual.difference(expected).map(|l| format!("+ {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>
  <interface name="xyz.smech.Spk1.Manager">
    <method name="Install">
      <arg name="names" type="as"/>
      <arg name="options" type="a{sv}" direction="in"/>
      <arg name="transaction" type="o" direction="out"/>
      <annotation name="org.freedesktop.DBus.Deprecated" value="false"/>
    </method>
    <signal name="UpdatesAvailable"><arg name="count" type="u" direction="out"/><arg name="names" type="as"/></signal>
    <property name="Busy" type="b" access="read"/>
  </interface>
</node>"#;

    #[test]
    fn normalization_keeps_names_types_directions_and_access() {
        let lines = normalize(XML, "xyz.smech.Spk1.").unwrap();
        let expected: BTreeSet<String> = [
            "xyz.smech.Spk1.Manager",
            "xyz.smech.Spk1.Manager method Install(in as names, in a{sv} options, out o transaction)",
            "xyz.smech.Spk1.Manager signal UpdatesAvailable(u count, as names)",
            "xyz.smech.Spk1.Manager property Busy: b (read)",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn diff_marks_both_sides() {
        let a: BTreeSet<String> = ["x".to_string(), "y".to_string()].into();
        let b: BTreeSet<String> = ["y".to_string(), "z".to_string()].into();
        assert_eq!(diff(&a, &b), vec!["- x".to_string(), "+ z".to_string()]);
    }
}
