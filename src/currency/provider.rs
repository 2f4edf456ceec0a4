//! Rate providers: where a quote comes from and how its document is read.
//! A quote is accepted only whole: a document that does not parse, names no
//! date, carries a rate that is not a positive decimal, lacks the
//! currencies needed to cross through its base, or exceeds 1 MiB is an
//! error, never a partial quote. (A document that is well formed but
//! publishes fewer currencies than before is a quote: the refresh keeps the
//! earlier rates of the missing ones.)

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use quick_xml::events::{BytesStart, Event};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::catalogue;

/// Provider documents are a few kilobytes; anything far larger is not one.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The ECB's eurofxref-daily.xml (base EUR).
    Ecb,
    /// `{"base": "USD", "timestamp": <unix secs>, "rates": {"BRL": 5.4, ...}}`
    /// (openexchangerates.org), or open.er-api.com's equivalent with
    /// `base_code` and `time_last_update_unix`.
    Json,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub kind: Kind,
    pub url: String,
}

/// Units of each currency per 1 unit of `base`, as one provider published them.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub base: &'static str,
    pub as_of: NaiveDate,
    /// Only catalogue currencies; includes `base` itself at 1.
    pub rates: BTreeMap<&'static str, Decimal>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("malformed document: {0}")]
    Malformed(String),
    #[error("document carries no rates")]
    Empty,
    #[error("document too large (over {MAX_BODY} bytes)")]
    TooLarge,
    #[error("provider reported an error: {0}")]
    Reported(String),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Ecb => "ecb",
            Kind::Json => "fallback",
        }
    }

    /// Fetches and parses the document. `client` carries the timeout.
    pub async fn fetch(&self, client: &reqwest::Client, timeout: Duration) -> Result<Quote, ProviderError> {
        let res = client.get(&self.url).timeout(timeout).send().await.map_err(http_error)?;
        if !res.status().is_success() {
            return Err(ProviderError::Status(res.status().as_u16()));
        }
        if res.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(ProviderError::TooLarge);
        }
        let body = read_capped(res).await?;
        self.parse(&body)
    }

    pub fn parse(&self, body: &[u8]) -> Result<Quote, ProviderError> {
        match self.kind {
            Kind::Ecb => parse_ecb(body),
            Kind::Json => parse_json(body),
        }
    }
}

/// Reads the body chunk by chunk and gives up at `MAX_BODY`: a chunked
/// response names no length, and must not be buffered whole (or endlessly)
/// before it can be refused.
async fn read_capped(mut res: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(http_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Without the URL: the fallback's carries an app id, which must stay out of
/// logs and refresh outcomes.
fn http_error(e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let e = e.without_url();
    let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
    ProviderError::Http(format!("{kind} ({e}{cause})"))
}

fn malformed(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed(e.to_string())
}

/// A rate as published: a positive decimal. Codes outside the catalogue are
/// skipped (`Ok(None)`), not errors: providers publish more than we offer.
fn rate(code: &str, value: &str) -> Result<Option<(&'static str, Decimal)>, ProviderError> {
    let v = value.trim();
    let parsed = if v.contains(['e', 'E']) { Decimal::from_scientific(v) } else { v.parse() };
    let d = parsed.map_err(|_| malformed(format!("rate of {code} is not a decimal: {value:?}")))?;
    if d <= Decimal::ZERO {
        return Err(malformed(format!("rate of {code} is not positive")));
    }
    Ok(catalogue::find(code).map(|c| (c.code, d)))
}

/// The ECB document: `<gesmes:Envelope><Cube><Cube time="YYYY-MM-DD"><Cube
/// currency="USD" rate="1.08"/>...`. Read with a streaming XML parser that
/// rejects mismatched tags; the rates must sit in exactly one dated Cube.
pub fn parse_ecb(body: &[u8]) -> Result<Quote, ProviderError> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut envelope = false;
    let mut as_of: Option<NaiveDate> = None;
    let mut rates = BTreeMap::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(malformed)?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name();
                if name.as_ref() == b"Envelope" {
                    envelope = true;
                } else if name.as_ref() == b"Cube" && envelope {
                    cube(e, &mut as_of, &mut rates)?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !envelope {
        return Err(malformed("not an ECB eurofxref document (no Envelope)"));
    }
    let as_of = as_of.ok_or_else(|| malformed("no Cube carries a time"))?;
    if rates.is_empty() {
        return Err(ProviderError::Empty);
    }
    if !rates.contains_key("USD") {
        return Err(malformed("no USD rate, so no rate can be crossed to USD"));
    }
    rates.insert("EUR", Decimal::ONE);
    Ok(Quote { base: "EUR", as_of, rates })
}

fn cube(
    e: &BytesStart<'_>,
    as_of: &mut Option<NaiveDate>,
    rates: &mut BTreeMap<&'static str, Decimal>,
) -> Result<(), ProviderError> {
    let (mut time, mut currency, mut value) = (None, None, None);
    for attr in e.attributes() {
        let attr = attr.map_err(malformed)?;
        let v = attr.unescape_value().map_err(malformed)?.into_owned();
        match attr.key.local_name().as_ref() {
            b"time" => time = Some(v),
            b"currency" => currency = Some(v),
            b"rate" => value = Some(v),
            _ => {}
        }
    }
    if let Some(t) = time {
        if as_of.is_some() {
            return Err(malformed("more than one dated Cube"));
        }
        *as_of = Some(NaiveDate::parse_from_str(&t, "%Y-%m-%d").map_err(|_| malformed(format!("bad time {t:?}")))?);
    }
    match (currency, value) {
        (Some(c), Some(v)) => {
            if as_of.is_none() {
                return Err(malformed("a rate outside a dated Cube"));
            }
            if let Some((code, d)) = rate(&c, &v)?
                && rates.insert(code, d).is_some()
            {
                return Err(malformed(format!("{code} appears twice")));
            }
        }
        (None, None) => {}
        _ => return Err(malformed("a Cube with a currency but no rate, or a rate but no currency")),
    }
    Ok(())
}

/// Optional fields, so that an error document (open.er-api.com answers
/// `{"result": "error", "error-type": ...}` with HTTP 200) is reported as
/// such rather than as a missing field.
#[derive(Deserialize)]
struct JsonDoc {
    /// open.er-api.com: "success" or "error".
    result: Option<String>,
    #[serde(rename = "error-type")]
    error_type: Option<String>,
    #[serde(alias = "base_code")]
    base: Option<String>,
    #[serde(alias = "time_last_update_unix")]
    timestamp: Option<i64>,
    // Raw, so a number is read from its literal text: serde_json would make
    // it a float and lose digits.
    rates: Option<BTreeMap<String, Box<serde_json::value::RawValue>>>,
}

/// A rate as a JSON number or a decimal string, as its literal text.
fn json_rate(code: &str, raw: &serde_json::value::RawValue) -> Result<String, ProviderError> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).map_err(malformed);
    }
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(text.to_string());
    }
    Err(malformed(format!("rate of {code} is not a number: {text}")))
}

/// The JSON document: `{"base": "USD", "timestamp": 1764720000, "rates":
/// {...}}`, or `{"result": "success", "base_code": "USD",
/// "time_last_update_unix": 1764720000, "rates": {...}}` (open.er-api.com).
pub fn parse_json(body: &[u8]) -> Result<Quote, ProviderError> {
    let doc: JsonDoc = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(result) = doc.result.as_deref().filter(|r| *r != "success") {
        let kind = doc.error_type.as_deref().unwrap_or("no error-type");
        return Err(ProviderError::Reported(format!("result {result:?} ({kind})")));
    }
    let base = doc.base.ok_or_else(|| malformed("no base"))?;
    let base = catalogue::find(base.trim()).ok_or_else(|| malformed(format!("unsupported base {base:?}")))?.code;
    let timestamp = doc.timestamp.ok_or_else(|| malformed("no timestamp"))?;
    let as_of = DateTime::from_timestamp(timestamp, 0)
        .filter(|_| timestamp > 0)
        .ok_or_else(|| malformed("timestamp out of range"))?
        .date_naive();
    let mut rates = BTreeMap::new();
    for (code, v) in &doc.rates.ok_or_else(|| malformed("no rates"))? {
        if let Some((code, d)) = rate(code, &json_rate(code, v)?)? {
            rates.insert(code, d);
        }
    }
    if rates.is_empty() {
        return Err(ProviderError::Empty);
    }
    match rates.get(base) {
        Some(d) if *d != Decimal::ONE => return Err(malformed(format!("the base {base} is not at 1"))),
        _ => {}
    }
    rates.insert(base, Decimal::ONE);
    if !rates.contains_key("USD") {
        return Err(malformed("no USD rate, so no rate can be crossed to USD"));
    }
    Ok(Quote { base, as_of, rates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const ECB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time='2026-12-02'>
      <Cube currency='USD' rate='1.08'/>
      <Cube currency='JPY' rate='162.51'/>
      <Cube currency='BRL' rate='6.00'/>
      <Cube currency='XAU' rate='0.0005'/>
    </Cube>
  </Cube>
</gesmes:Envelope>"#;

    #[test]
    fn reads_the_ecb_document() {
        let q = parse_ecb(ECB.as_bytes()).unwrap();
        assert_eq!(q.base, "EUR");
        assert_eq!(q.as_of, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        assert_eq!(q.rates.get("USD"), Some(&d("1.08")));
        assert_eq!(q.rates.get("BRL"), Some(&d("6.00")));
        assert_eq!(q.rates.get("EUR"), Some(&Decimal::ONE));
        // Not in the catalogue: skipped.
        assert_eq!(q.rates.len(), 4);
    }

    #[test]
    fn refuses_bad_ecb_documents() {
        let cases = [
            ("", "no envelope"),
            ("<html><body>Service unavailable</body></html>", "html"),
            ("{\"rates\": {}}", "json"),
            (&ECB[..ECB.len() / 2], "truncated"),
            (&ECB.replace("</Cube>\n  </Cube>", "</Cube>"), "mismatched"),
            (&ECB.replace("rate='6.00'", "rate='six'"), "not a number"),
            (&ECB.replace("rate='6.00'", "rate='-6'"), "negative"),
            (&ECB.replace("rate='6.00'", "rate='0'"), "zero"),
            (&ECB.replace("time='2026-12-02'", "time='yesterday'"), "bad date"),
            (&ECB.replace("<Cube currency='USD' rate='1.08'/>", ""), "no USD"),
            (&ECB.replace("currency='JPY'", "currency='USD'"), "duplicate"),
        ];
        for (doc, why) in cases {
            assert!(parse_ecb(doc.as_bytes()).is_err(), "{why} was accepted");
        }
        let empty =
            r#"<gesmes:Envelope xmlns:gesmes="x"><Cube><Cube time="2026-12-02"></Cube></Cube></gesmes:Envelope>"#;
        assert!(matches!(parse_ecb(empty.as_bytes()), Err(ProviderError::Empty)));
    }

    #[test]
    fn reads_the_json_document_without_floats() {
        let q = parse_json(
            br#"{"base":"USD","timestamp":1764720000,"rates":{"USD":1,"CLP":943.123456789012345678,"KWD":"0.3071","FOO":2}}"#,
        )
        .unwrap();
        assert_eq!(q.base, "USD");
        assert_eq!(q.as_of, NaiveDate::from_ymd_opt(2025, 12, 3).unwrap());
        assert_eq!(q.rates.get("CLP"), Some(&d("943.123456789012345678")));
        assert_eq!(q.rates.get("KWD"), Some(&d("0.3071")));
        assert_eq!(q.rates.len(), 3);
    }

    #[test]
    fn reads_the_open_er_api_document() {
        let q = parse_json(include_bytes!("../../tests/fixtures/open-er-api.json")).unwrap();
        assert_eq!(q.base, "USD");
        assert_eq!(q.as_of, NaiveDate::from_ymd_opt(2026, 12, 3).unwrap());
        assert_eq!(q.rates.get("CLP"), Some(&d("948.7")));
        assert_eq!(q.rates.get("KWD"), Some(&d("0.30712")));
        assert_eq!(q.rates.len(), catalogue::all().len(), "it publishes every catalogue currency");
        let error = br#"{"result":"error","error-type":"unsupported-code"}"#;
        assert!(matches!(parse_json(error), Err(ProviderError::Reported(e)) if e.contains("unsupported-code")));
    }

    #[test]
    fn refuses_bad_json_documents() {
        for doc in [
            "",
            "garbage",
            r#"{"base":"USD","timestamp":1764720000,"rates":{}}"#,
            r#"{"base":"USD","timestamp":1764720000}"#,
            r#"{"base":"USD","timestamp":1764720000,"rates":{"BRL":null}}"#,
            r#"{"base":"USD","timestamp":1764720000,"rates":{"BRL":-5}}"#,
            r#"{"base":"XYZ","timestamp":1764720000,"rates":{"BRL":5}}"#,
            r#"{"base":"USD","timestamp":-1,"rates":{"BRL":5}}"#,
            r#"{"base":"EUR","timestamp":1764720000,"rates":{"BRL":6}}"#,
            r#"{"base":"USD","timestamp":1764720000,"rates":{"USD":2,"BRL":6}}"#,
            r#"{"base_code":"USD","rates":{"BRL":6}}"#,
            r#"{"timestamp":1764720000,"rates":{"BRL":6}}"#,
            r#"{"base":"USD","base_code":"USD","timestamp":1764720000,"rates":{"BRL":6}}"#,
            r#"{"result":"success","base_code":"USD","time_last_update_unix":"soon","rates":{"BRL":6}}"#,
        ] {
            assert!(parse_json(doc.as_bytes()).is_err(), "{doc} was accepted");
        }
    }
}
