//! Draws the training curves of finished runs as one PNG: one panel per
//! run, the per-step loss in grey and its moving average in black, on a
//! logarithmic loss axis. The losses come from the newest checkpoint's
//! `state.json`, which keeps every step's loss.
//!
//! Run: `cargo run --release --example plot_training -- --run runs/vae
//! --run runs/diffusion --out docs/training.png`

use std::path::PathBuf;

use ab_glyph::{FontRef, PxScale};
use anyhow::{Context, bail};
use clap::Parser;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_antialiased_line_segment_mut, draw_line_segment_mut, draw_text_mut};
use imageproc::pixelops::interpolate;
use mmgen::train::checkpoint::{self, RunState};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");
const PANEL_WIDTH: u32 = 640;
const PANEL_HEIGHT: u32 = 400;
/// Margins around a panel's plot area: left, right, top, bottom.
const MARGIN: (u32, u32, u32, u32) = (70, 20, 40, 50);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([190, 190, 190]);
const GRID: Rgb<u8> = Rgb([232, 232, 232]);

#[derive(Parser)]
struct Args {
    /// Run directories to plot, one panel each.
    #[arg(long, required = true)]
    run: Vec<PathBuf>,
    /// Steps averaged by the dark curve.
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let font = FontRef::try_from_slice(FONT).context("parsing the embedded font")?;
    let mut canvas = RgbImage::from_pixel(
        PANEL_WIDTH * args.run.len() as u32,
        PANEL_HEIGHT,
        Rgb([255, 255, 255]),
    );
    for (index, run) in args.run.iter().enumerate() {
        let folder = checkpoint::latest(run)?
            .with_context(|| format!("no checkpoint in {}", run.display()))?;
        let bytes = std::fs::read(folder.join("state.json"))
            .with_context(|| format!("reading {}", folder.display()))?;
        let state: RunState = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}/state.json", folder.display()))?;
        if state.losses.len() < 2 {
            bail!("{} has fewer than two recorded losses", run.display());
        }
        let title = format!("{} loss, {} steps", state.stage, state.step);
        draw_panel(
            &mut canvas,
            index as u32 * PANEL_WIDTH,
            &state.losses,
            args.window,
            &title,
            &font,
        );
        println!(
            "{}: {} losses up to step {}",
            run.display(),
            state.losses.len(),
            state.step
        );
    }
    canvas
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Draws one panel whose left edge is at `left`.
fn draw_panel(
    canvas: &mut RgbImage,
    left: u32,
    losses: &[(usize, f64)],
    window: usize,
    title: &str,
    font: &FontRef<'_>,
) {
    let (margin_left, margin_right, margin_top, margin_bottom) = MARGIN;
    let x0 = (left + margin_left) as f32;
    let x1 = (left + PANEL_WIDTH - margin_right) as f32;
    let y0 = margin_top as f32;
    let y1 = (PANEL_HEIGHT - margin_bottom) as f32;

    let last_step = losses.last().map_or(1, |&(step, _)| step).max(1) as f32;
    let positive: Vec<f64> = losses
        .iter()
        .map(|&(_, l)| l)
        .filter(|l| *l > 0.0)
        .collect();
    let low = positive
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor();
    let high = positive
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(low + 1.0);
    let to_x = |step: usize| x0 + (x1 - x0) * step as f32 / last_step;
    let to_y = |loss: f64| {
        let t = (loss.max(1e-12).log10() - low) / (high - low);
        y1 - (y1 - y0) * t as f32
    };

    let small = PxScale::from(14.0);
    // Decade grid lines with their labels.
    for decade in low as i32..=high as i32 {
        let y = to_y(10f64.powi(decade));
        draw_line_segment_mut(canvas, (x0, y), (x1, y), GRID);
        let label = format!("1e{decade}");
        draw_text_mut(
            canvas,
            BLACK,
            (left + 8) as i32,
            y as i32 - 8,
            small,
            font,
            &label,
        );
    }
    // Step ticks at five evenly spaced points.
    for tick in 0..=4 {
        let step = (last_step * tick as f32 / 4.0).round() as usize;
        let x = to_x(step);
        draw_line_segment_mut(canvas, (x, y1), (x, y1 + 5.0), BLACK);
        let label = step.to_string();
        let offset = 4 * label.len() as i32;
        draw_text_mut(
            canvas,
            BLACK,
            x as i32 - offset,
            y1 as i32 + 10,
            small,
            font,
            &label,
        );
    }
    draw_line_segment_mut(canvas, (x0, y0), (x0, y1), BLACK);
    draw_line_segment_mut(canvas, (x0, y1), (x1, y1), BLACK);
    draw_text_mut(
        canvas,
        BLACK,
        x0 as i32,
        10,
        PxScale::from(18.0),
        font,
        title,
    );
    let axis = "step";
    draw_text_mut(
        canvas,
        BLACK,
        ((x0 + x1) / 2.0) as i32 - 16,
        y1 as i32 + 28,
        small,
        font,
        axis,
    );

    for &(step, loss) in losses {
        let (x, y) = (to_x(step), to_y(loss));
        if (x0..=x1).contains(&x) && (y0..=y1).contains(&y) {
            canvas.put_pixel(x as u32, y as u32, GREY);
        }
    }
    let averaged = moving_average(losses, window);
    for pair in averaged.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let from = (to_x(a.0) as i32, to_y(a.1) as i32);
        let to = (to_x(b.0) as i32, to_y(b.1) as i32);
        draw_antialiased_line_segment_mut(canvas, from, to, BLACK, interpolate);
    }
}

/// Returns the trailing mean of the last `window` losses at every step.
fn moving_average(losses: &[(usize, f64)], window: usize) -> Vec<(usize, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(losses.len());
    for (index, &(step, loss)) in losses.iter().enumerate() {
        sum += loss;
        if index >= window {
            sum -= losses[index - window].1;
        }
        out.push((step, sum / (index + 1).min(window) as f64));
    }
    out
}
