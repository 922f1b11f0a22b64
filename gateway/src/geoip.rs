//! GeoIP facts for policies: country, region and ASN from MaxMind/GeoLite2 `.mmdb` files,
//! opened at start and on every reload (a reload with a new file replaces the readers).

use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;

/// Opened GeoIP databases.
pub struct GeoIp {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("city", &self.city.is_some())
            .field("asn", &self.asn.is_some())
            .finish()
    }
}

/// What the databases say about one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoFacts {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// ISO 3166-2, e.g. `FR-IDF`.
    pub region: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
}

#[derive(Deserialize)]
struct IsoCode {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct CityRecord {
    country: Option<IsoCode>,
    subdivisions: Option<Vec<IsoCode>>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

impl GeoIp {
    /// Opens the configured files; the error names the file and the reason.
    pub fn open(city: Option<&str>, asn: Option<&str>) -> Result<Self, (&'static str, String)> {
        let open = |key: &'static str, path: &str| {
            Reader::open_readfile(path)
                .map_err(|e| (key, format!("{path:?}: cannot open GeoIP database: {e}")))
        };
        Ok(Self {
            city: city.map(|p| open("city", p)).transpose()?,
            asn: asn.map(|p| open("asn", p)).transpose()?,
        })
    }

    /// Looks up an address; unknown addresses and lookup errors yield empty facts (policies
    /// that need a country then fail closed, since the condition cannot be proven).
    pub fn lookup(&self, ip: IpAddr) -> GeoFacts {
        let mut facts = GeoFacts::default();
        if let Some(rec) = self
            .city
            .as_ref()
            .and_then(|r| r.lookup(ip).ok())
            .and_then(|r| r.decode::<CityRecord>().ok().flatten())
        {
            facts.country = rec.country.and_then(|c| c.iso_code);
            if let (Some(c), Some(sub)) = (
                facts.country.as_deref(),
                rec.subdivisions
                    .and_then(|s| s.into_iter().next())
                    .and_then(|s| s.iso_code),
            ) {
                facts.region = Some(format!("{c}-{sub}"));
            }
        }
        facts.asn = self
            .asn
            .as_ref()
            .and_then(|r| r.lookup(ip).ok())
            .and_then(|r| r.decode::<AsnRecord>().ok().flatten())
            .and_then(|r| r.autonomous_system_number);
        facts
    }
}
