//! Writes the 640×480 sample frames (one face, five faces) cut from the embedded group photo,
//! as JPEG, for the benchmarks: `sample_frames DIR`.

use ferrite_vision::picture::SampleFrame;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: sample_frames DIR")?);
    std::fs::create_dir_all(&dir)?;
    for (frame, name) in [
        (SampleFrame::OneFace, "one-face.jpg"),
        (SampleFrame::FiveFaces, "five-faces.jpg"),
    ] {
        let path = dir.join(name);
        image::DynamicImage::ImageRgb8(frame.render().to_rgb8()).save(&path)?;
        println!("{}", path.display());
    }
    Ok(())
}
