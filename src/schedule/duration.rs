//! Human durations in slot files: "30m", "1h30m", "90s", "2h".

use std::time::Duration;

/// Parse "1h30m", "45s", "30m" (units h, m, s; at least one part; no zero total).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (write e.g. \"30m\", \"1h30m\" or \"90s\")".into());
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{text}': a number must come before '{c}'"))?;
        num.clear();
        let secs = match c {
            'h' => n.checked_mul(3600),
            'm' => n.checked_mul(60),
            's' => Some(n),
            _ => return Err(format!("'{text}': unknown unit '{c}' (use h, m or s)")),
        };
        total = secs
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("'{text}' is too long"))?;
    }
    if !num.is_empty() {
        return Err(format!(
            "'{text}': the number {num} has no unit (h, m or s)"
        ));
    }
    if total == 0 {
        return Err(format!("'{text}' is zero"));
    }
    Ok(Duration::from_secs(total))
}

/// The inverse of [`parse_duration`] for whole seconds: 5400 s -> "1h30m".
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table = [
            ("30m", Ok(1800)),
            ("1h30m", Ok(5400)),
            ("90s", Ok(90)),
            ("2h", Ok(7200)),
            ("", Err(())),
            ("30", Err(())),
            ("5x", Err(())),
            ("0m", Err(())),
            ("m", Err(())),
        ];
        for (text, want) in table {
            let got = parse_duration(text).map(|d| d.as_secs()).map_err(|_| ());
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
    }
}
