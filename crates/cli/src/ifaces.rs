//! `weft ifaces`: this host's network interfaces, their addresses and the
//! default route, read from the system without sending anything.
//!
//! `weft ifaces --json` prints exactly one JSON object:
//!
//! ```text
//! {"default":{"v4":"eth0","v6":null},
//!  "interfaces":[{"name":"lo","index":1,"up":true,"loopback":true,
//!                 "addrs":[{"ip":"127.0.0.1","prefix":8,"broadcast":null,"scope":"loopback"}]}]}
//! ```
//!
//! `default.v4` and `default.v6` name the interface of each family's
//! default route, or are `null` when there is none (or the system's routes
//! cannot be read here). `index` is `null` only if the system gives none;
//! `broadcast` is the IPv4 broadcast address or `null`. `scope` is one of
//! `loopback` (127/8, ::1), `link-local` (169.254/16, fe80::/10),
//! `unique-local` (fc00::/7), `private` (10/8, 172.16/12, 192.168/16 and the
//! carrier-grade NAT range 100.64/10) or `global` (anything else).

use std::fmt::Write as _;

use serde_json::{Value, json};
use weft_netiface::{DefaultRoute, DefaultRoutes, Interface, NetifaceError};

/// Arguments of `weft ifaces`.
#[derive(clap::Args, Debug)]
pub(crate) struct IfacesArgs {
    /// Print one JSON object instead of a table:
    /// {"default":{"v4","v6"},"interfaces":[{"name","index","up","loopback","addrs":[{"ip","prefix","broadcast","scope"}]}]}.
    /// scope is loopback, link-local, unique-local, private (RFC 1918 and
    /// 100.64/10) or global.
    #[arg(long)]
    json: bool,
}

/// Runs `weft ifaces`.
pub(crate) fn run_ifaces(args: IfacesArgs) -> Result<(), String> {
    let interfaces = weft_netiface::interfaces().map_err(|e| e.to_string())?;
    let defaults = match weft_netiface::default_routes() {
        Ok(routes) => Ok(routes),
        Err(NetifaceError::Unsupported(what)) => Err(what),
        Err(e) => return Err(e.to_string()),
    };
    if args.json {
        let defaults = defaults.unwrap_or_default();
        println!("{}", to_json(&defaults, &interfaces));
    } else {
        print!("{}", table(&defaults, &interfaces));
    }
    Ok(())
}

/// The `--json` object.
fn to_json(defaults: &DefaultRoutes, interfaces: &[Interface]) -> Value {
    let name = |route: &Option<DefaultRoute>| route.as_ref().map(|r| r.interface.clone());
    let interfaces: Vec<Value> = interfaces
        .iter()
        .map(|iface| {
            let addrs: Vec<Value> = iface
                .addrs
                .iter()
                .map(|a| {
                    json!({
                        "ip": a.ip.to_string(),
                        "prefix": a.prefix,
                        "broadcast": a.broadcast.map(|b| b.to_string()),
                        "scope": a.scope.as_str(),
                    })
                })
                .collect();
            json!({
                "name": iface.name,
                "index": iface.index,
                "up": iface.flags.up,
                "loopback": iface.flags.loopback,
                "addrs": addrs,
            })
        })
        .collect();
    json!({
        "default": { "v4": name(&defaults.v4), "v6": name(&defaults.v6) },
        "interfaces": interfaces,
    })
}

/// The readable form: the default routes, then one row per address.
fn table(defaults: &Result<DefaultRoutes, &'static str>, interfaces: &[Interface]) -> String {
    let mut out = String::new();
    let route = |r: &Option<DefaultRoute>| match r {
        Some(DefaultRoute {
            interface,
            gateway: Some(gw),
            ..
        }) => format!("{interface} via {gw}"),
        Some(r) => format!("{} (on link)", r.interface),
        None => "none".to_owned(),
    };
    match defaults {
        Ok(d) => {
            let _ = writeln!(
                out,
                "default route: IPv4 {}, IPv6 {}",
                route(&d.v4),
                route(&d.v6)
            );
        }
        Err(why) => {
            let _ = writeln!(out, "default route: unknown ({why})");
        }
    }
    out.push('\n');

    let mut rows = vec![[
        "INDEX".to_owned(),
        "NAME".to_owned(),
        "FLAGS".to_owned(),
        "ADDRESS".to_owned(),
        "SCOPE".to_owned(),
        "BROADCAST".to_owned(),
    ]];
    for iface in interfaces {
        let f = &iface.flags;
        let mut flags: Vec<&str> = vec![if f.up { "up" } else { "down" }];
        for (on, word) in [
            (f.loopback, "loopback"),
            (f.broadcast, "broadcast"),
            (f.multicast, "multicast"),
            (f.point_to_point, "p2p"),
        ] {
            if on {
                flags.push(word);
            }
        }
        if f.inferred {
            flags.push("(guessed)");
        }
        let index = iface.index.map_or("-".to_owned(), |i| i.to_string());
        let mut first = [index, iface.name.clone(), flags.join(",")];
        if iface.addrs.is_empty() {
            let [a, b, c] = first;
            rows.push([a, b, c, "-".into(), String::new(), String::new()]);
            continue;
        }
        for addr in &iface.addrs {
            let [a, b, c] = std::mem::take(&mut first);
            let broadcast = addr.broadcast.map_or("-".to_owned(), |b| b.to_string());
            rows.push([a, b, c, addr.to_string(), addr.scope.to_string(), broadcast]);
        }
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_shape() {
        let interfaces = weft_netiface::interfaces().unwrap();
        let value = to_json(&DefaultRoutes::default(), &interfaces);
        let obj = value.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert_eq!(value["default"], json!({ "v4": null, "v6": null }));
        let list = value["interfaces"].as_array().unwrap();
        assert_eq!(list.len(), interfaces.len());
        let words = [
            "loopback",
            "link-local",
            "unique-local",
            "private",
            "global",
        ];
        for iface in list {
            let mut keys: Vec<&str> = iface
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(keys, ["addrs", "index", "loopback", "name", "up"]);
            for addr in iface["addrs"].as_array().unwrap() {
                assert_eq!(addr.as_object().unwrap().len(), 4);
                assert!(addr["ip"].is_string() && addr["prefix"].is_u64());
                assert!(addr["broadcast"].is_null() || addr["broadcast"].is_string());
                assert!(words.contains(&addr["scope"].as_str().unwrap()));
            }
        }
        let lo = list.iter().find(|i| i["loopback"] == true).unwrap();
        assert!(
            lo["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["scope"] == "loopback")
        );
    }

    #[test]
    fn table_lists_every_address() {
        let interfaces = weft_netiface::interfaces().unwrap();
        let text = table(&Err("not here"), &interfaces);
        assert!(text.starts_with("default route: unknown (not here)\n"));
        for iface in &interfaces {
            assert!(text.contains(&iface.name));
            for addr in &iface.addrs {
                assert!(text.contains(&addr.to_string()), "{addr} in\n{text}");
            }
        }
    }
}
