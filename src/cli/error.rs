//! How an error reaches the user: once. Library errors often show their cause
//! in their own message ("file: No such file or directory") and also keep it as
//! their `source`, so printing the whole chain would say it twice; a cause
//! already contained in the text so far is left out.

/// The error and its causes, outermost first, each said once, joined by ": ".
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}
