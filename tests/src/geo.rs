//! Tiny GeoIP databases written by the tests themselves, in the GeoLite2 record shapes the
//! gateway reads (`country.iso_code`, `subdivisions[].iso_code`, `autonomous_system_number`).

use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Iso {
    iso_code: String,
}

#[derive(Serialize)]
struct City {
    country: Iso,
    subdivisions: Vec<Iso>,
}

#[derive(Serialize)]
struct Asn {
    autonomous_system_number: u32,
}

/// Writes a City database: `(cidr, country, subdivision)` rows.
pub fn write_city(path: &Path, rows: &[(&str, &str, Option<&str>)]) {
    let mut w = mmdb_writer::Writer::new("GeoLite2-City");
    for (net, country, sub) in rows {
        let rec = City {
            country: Iso {
                iso_code: country.to_string(),
            },
            subdivisions: sub
                .iter()
                .map(|s| Iso {
                    iso_code: s.to_string(),
                })
                .collect(),
        };
        w.insert(net.parse::<ipnet::IpNet>().expect("cidr"), &rec)
            .expect("insert");
    }
    std::fs::write(path, w.to_bytes().expect("serialise mmdb")).expect("write mmdb");
}

/// Writes an ASN database: `(cidr, asn)` rows.
pub fn write_asn(path: &Path, rows: &[(&str, u32)]) {
    let mut w = mmdb_writer::Writer::new("GeoLite2-ASN");
    for (net, asn) in rows {
        w.insert(
            net.parse::<ipnet::IpNet>().expect("cidr"),
            &Asn {
                autonomous_system_number: *asn,
            },
        )
        .expect("insert");
    }
    std::fs::write(path, w.to_bytes().expect("serialise mmdb")).expect("write mmdb");
}
