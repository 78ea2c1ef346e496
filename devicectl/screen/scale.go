package screen

import (
	"image"
)

// Scale resizes img by s (0 < s ≤ 1) averaging the source pixels each
// destination pixel covers, so text stays legible when shrunk.
func Scale(img image.Image, s float64) *image.RGBA {
	src, ok := img.(*image.RGBA)
	if !ok {
		b := img.Bounds()
		src = image.NewRGBA(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				src.Set(x, y, img.At(x, y))
			}
		}
	}
	sb := src.Bounds()
	dw, dh := max(1, int(float64(sb.Dx())*s+0.5)), max(1, int(float64(sb.Dy())*s+0.5))
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for dy := range dh {
		y0 := sb.Min.Y + dy*sb.Dy()/dh
		y1 := max(y0+1, sb.Min.Y+(dy+1)*sb.Dy()/dh)
		for dx := range dw {
			x0 := sb.Min.X + dx*sb.Dx()/dw
			x1 := max(x0+1, sb.Min.X+(dx+1)*sb.Dx()/dw)
			var r, g, b, a, n uint32
			for y := y0; y < y1; y++ {
				i := src.PixOffset(x0, y)
				for x := x0; x < x1; x++ {
					r += uint32(src.Pix[i])
					g += uint32(src.Pix[i+1])
					b += uint32(src.Pix[i+2])
					a += uint32(src.Pix[i+3])
					i += 4
					n++
				}
			}
			o := dst.PixOffset(dx, dy)
			dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] = uint8(r/n), uint8(g/n), uint8(b/n), uint8(a/n)
		}
	}
	return dst
}
