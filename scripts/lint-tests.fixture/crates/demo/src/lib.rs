#[cfg(test)]
mod tests {
    #[test]
    fn always_passes() {
        // A comment with assert!(true) is not code.
        assert!(true);
    }

    #[test]
    fn skips_by_returning() {
        eprintln!("skipped: nothing to test against");
        return;
    }
}
