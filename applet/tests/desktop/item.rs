//! The tray item as a StatusNotifierHost (Plasma's system tray) sees it: properties of
//! `org.kde.StatusNotifierItem` and the `com.canonical.dbusmenu` menu, which it can click.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

use super::Desktop;

const ITEM_IFACE: &str = "org.kde.StatusNotifierItem";
const MENU_IFACE: &str = "com.canonical.dbusmenu";

/// A tray item on the session bus, as a StatusNotifierHost would address it.
#[derive(Debug, Clone)]
pub struct Item {
    pub service: String,
    pub path: String,
}

impl Item {
    /// Parse a `RegisteredStatusNotifierItems` entry: `SERVICE` or `SERVICE/PATH`.
    pub fn parse(entry: &str) -> Item {
        match entry.find('/') {
            Some(i) => Item {
                service: entry[..i].to_owned(),
                path: entry[i..].to_owned(),
            },
            None => Item {
                service: entry.to_owned(),
                path: "/StatusNotifierItem".to_owned(),
            },
        }
    }

    /// One `org.kde.StatusNotifierItem` property.
    pub async fn property(&self, desktop: &Desktop, name: &str) -> OwnedValue {
        desktop
            .get_property(&self.service, &self.path, ITEM_IFACE, name)
            .await
            .unwrap_or_else(|e| panic!("item property {name}: {e}"))
    }

    /// `Status`: Passive, Active or NeedsAttention.
    pub async fn status(&self, desktop: &Desktop) -> String {
        String::try_from(self.property(desktop, "Status").await).expect("Status is s")
    }

    /// `ToolTip` `(sa(iiay)ss)` as (title, description).
    pub async fn tooltip(&self, desktop: &Desktop) -> (String, String) {
        /// `(icon name, pixmaps (w, h, ARGB32), title, description)`.
        type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);
        let (_icon, _pixmaps, title, text): ToolTip = self
            .property(desktop, "ToolTip")
            .await
            .try_into()
            .expect("ToolTip is (sa(iiay)ss)");
        (title, text)
    }

    /// Every property of the item, for the record.
    pub async fn all_properties(&self, desktop: &Desktop) -> Vec<(String, String)> {
        let reply = desktop
            .conn
            .call_method(
                Some(self.service.as_str()),
                self.path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "GetAll",
                &(ITEM_IFACE,),
            )
            .await
            .expect("GetAll on the item");
        let all: HashMap<String, OwnedValue> = reply.body().deserialize().expect("a{sv}");
        let mut all: Vec<(String, String)> = all.into_iter().map(|(k, v)| (k, show(&v))).collect();
        all.sort();
        all
    }

    /// The menu: (id, label, enabled) of each top-level entry, from `GetLayout`.
    pub async fn menu(&self, desktop: &Desktop) -> Vec<(i32, String, bool)> {
        let menu_path =
            zbus::zvariant::OwnedObjectPath::try_from(self.property(desktop, "Menu").await)
                .expect("Menu is o");
        let empty: Vec<&str> = Vec::new();
        let reply = desktop
            .conn
            .call_method(
                Some(self.service.as_str()),
                menu_path.as_str(),
                Some(MENU_IFACE),
                "GetLayout",
                &(0i32, -1i32, empty),
            )
            .await
            .expect("GetLayout");
        type Node = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);
        let (_revision, (_root, _props, children)): (u32, Node) =
            reply.body().deserialize().expect("(u(ia{sv}av))");
        children
            .into_iter()
            .filter_map(|child| Node::try_from(child).ok())
            .map(|(id, props, _)| {
                let label = props
                    .get("label")
                    .and_then(|v| v.downcast_ref::<&str>().ok().map(str::to_owned))
                    .unwrap_or_default();
                let enabled = props
                    .get("enabled")
                    .and_then(|v| v.downcast_ref::<bool>().ok())
                    .unwrap_or(true);
                (id, label, enabled)
            })
            .collect()
    }

    /// Click the menu entry labelled `label`, as Plasma's tray does (`Event(id, "clicked")`).
    pub async fn click(&self, desktop: &Desktop, label: &str) {
        let menu = self.menu(desktop).await;
        let (id, _, enabled) = menu
            .iter()
            .find(|(_, l, _)| l == label)
            .unwrap_or_else(|| panic!("no menu entry {label:?} in {menu:?}"));
        assert!(enabled, "menu entry {label:?} is disabled: {menu:?}");
        let menu_path =
            zbus::zvariant::OwnedObjectPath::try_from(self.property(desktop, "Menu").await)
                .expect("Menu is o");
        desktop
            .conn
            .call_method(
                Some(self.service.as_str()),
                menu_path.as_str(),
                Some(MENU_IFACE),
                "Event",
                &(*id, "clicked", Value::from(0i32), 0u32),
            )
            .await
            .expect("dbusmenu Event");
    }
}

/// A D-Bus value in a readable form for the record.
fn show(value: &Value<'_>) -> String {
    match value {
        Value::Str(s) => format!("{:?}", s.as_str()),
        Value::ObjectPath(p) => p.as_str().to_owned(),
        Value::Structure(s) => format!(
            "({})",
            s.fields().iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        Value::Value(v) => show(v),
        other => format!("{other}"),
    }
}
