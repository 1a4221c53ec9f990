//! Value parsers for command-line options: every number is checked when it is
//! parsed (finite, in range), so a bad value is refused by name before any work.

use cimnet::data::synth::SynthSpec;

/// Widest GRU hidden size / dense width accepted: far above the paper's 200 / 100,
/// and small enough that the parameters and activations fit in memory.
const MAX_WIDTH: usize = 4096;

/// Most memory synthetic data may take (features and labels, f32): beyond this a
/// `--scale` would abort on allocation instead of failing with a message.
const MAX_SYNTH_BYTES: f64 = 16.0 * (1u64 << 30) as f64;

fn integer(s: &str) -> Result<usize, String> {
    s.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a whole number"))
}

fn number(s: &str) -> Result<f64, String> {
    let x: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !x.is_finite() {
        return Err(format!("{s} is not a finite number"));
    }
    Ok(x)
}

/// A count of at least 1 (epochs, batch, patience).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    let n = integer(s)?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// A layer width (hidden size, dense width).
pub fn width(s: &str) -> Result<usize, String> {
    let n = integer(s)?;
    if !(1..=MAX_WIDTH).contains(&n) {
        return Err(format!("must be in 1..={MAX_WIDTH}"));
    }
    Ok(n)
}

/// A learning rate: finite and positive.
pub fn learning_rate(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x <= 0.0 {
        return Err("must be greater than 0".into());
    }
    Ok(x)
}

/// A dropout rate in [0, 1).
pub fn dropout(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if !(0.0..1.0).contains(&x) {
        return Err("must be in [0, 1)".into());
    }
    Ok(x)
}

/// A share in [0, 1) (the validation carve-out).
pub fn fraction(s: &str) -> Result<f64, String> {
    dropout(s)
}

/// Bytes the synthetic data of `scale` takes (features and labels as f32).
pub fn synth_bytes(scale: f64) -> f64 {
    let spec = SynthSpec::mosei();
    let utterances: usize = spec.histograms.iter().flatten().map(|&(len, count)| len * count).sum();
    let per_utterance = spec.dims.iter().sum::<usize>() + 1 + cimnet::config::EMOTIONS;
    scale * (utterances * per_utterance * 4) as f64
}

/// The scale of synthetic data: positive, and small enough to fit in memory.
pub fn synth_scale(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x <= 0.0 {
        return Err("must be greater than 0".into());
    }
    let need = synth_bytes(x);
    if need > MAX_SYNTH_BYTES {
        let gib = |b: f64| b / (1u64 << 30) as f64;
        return Err(format!(
            "would need about {:.0} GiB of memory for the data, more than the {:.0} GiB allowed (at most scale {:.0})",
            gib(need),
            gib(MAX_SYNTH_BYTES),
            (MAX_SYNTH_BYTES / synth_bytes(1.0)).floor()
        ));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_numbers_are_refused_when_parsed() {
        assert!(learning_rate("nan").is_err() && learning_rate("inf").is_err() && learning_rate("0").is_err());
        assert_eq!(learning_rate("1e-3"), Ok(1e-3));
        assert!(at_least_one("0").is_err() && at_least_one("-1").is_err());
        assert!(dropout("1").is_err() && dropout("-0.1").is_err() && dropout("NaN").is_err());
        assert!(width("100000").is_err());
        assert!(synth_scale("1e6").unwrap_err().contains("GiB"));
        assert_eq!(synth_scale("0.5"), Ok(0.5));
    }

    #[test]
    fn synthetic_mosei_takes_what_its_shape_says() {
        // 22,860 utterances of 300 + 74 + 35 features, 1 sentiment and 6 emotions, f32.
        assert_eq!(synth_bytes(1.0), (22_860 * 416 * 4) as f64);
    }
}
