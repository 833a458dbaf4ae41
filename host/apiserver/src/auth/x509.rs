//! The subject of a client certificate (its CN and O values), read from DER with a small bounded reader (also used for certificate requests).

/// A DER element: its tag, its contents, and its whole encoding.
pub(crate) struct Element<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    /// Tag, length and contents, as a signature covers them.
    pub raw: &'a [u8],
}

/// The first element of `input` and what follows it; `None` for malformed input.
pub(crate) fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    let raw = &input[..input.len() - rest.len()];
    Some((Element { tag, contents, raw }, rest))
}

/// Every element of a sequence's or set's contents.
pub(crate) fn elements(mut input: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut all = Vec::new();
    while !input.is_empty() {
        let (e, rest) = element(input)?;
        all.push(e);
        input = rest;
    }
    Some(all)
}

pub(crate) const SEQUENCE: u8 = 0x30;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject's common name and organizations of the DER certificate `der`.
pub fn subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (certificate, _) = element(der)?;
    let (tbs, _) = element(certificate.contents)?;
    let fields = elements(tbs.contents)?;
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first()?.tag == 0xa0);
    let name = fields.get(skip + 4).filter(|f| f.tag == SEQUENCE)?;
    let (common_name, organizations) = name_of(name)?;
    Some((common_name?, organizations))
}

/// The SubjectPublicKeyInfo (its whole encoding) of the DER certificate `der`.
pub(crate) fn public_key_info(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(der)?;
    let (tbs, _) = element(certificate.contents)?;
    let fields = elements(tbs.contents)?;
    let skip = usize::from(fields.first()?.tag == 0xa0);
    fields
        .get(skip + 5)
        .filter(|f| f.tag == SEQUENCE)
        .map(|f| f.raw)
}

/// The common name (if any) and organizations of an X.509 `Name`.
pub(crate) fn name_of(name: &Element<'_>) -> Option<(Option<String>, Vec<String>)> {
    let (mut common_name, mut organizations) = (None, Vec::new());
    for rdn in elements(name.contents)? {
        for attribute in elements(rdn.contents)? {
            let [oid, value] = elements(attribute.contents)?.try_into().ok()?;
            let text = std::str::from_utf8(value.contents).ok()?.to_string();
            match oid.contents {
                OID_COMMON_NAME => common_name = Some(text),
                OID_ORGANIZATION => organizations.push(text),
                _ => {}
            }
        }
    }
    Some((common_name, organizations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_of_an_rcgen_certificate() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "devs");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            subject(cert.der()),
            Some(("alice".to_string(), vec!["devs".to_string()]))
        );
    }

    #[test]
    fn malformed_input_is_none() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 1],
        ] {
            assert_eq!(subject(bad), None);
        }
    }
}
