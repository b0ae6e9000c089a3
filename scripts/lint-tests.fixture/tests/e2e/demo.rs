#[test]
fn rows_are_listed() {
    let rows: Vec<u8> = Vec::new();
    assert_eq!(rows.capacity(), rows.len());
    assert!(rows.len() >= 0, "rows listed");
}
