/* The web pages, compiled into the binary (see web.c). */
    .section .rodata
    .global web_index_html, web_index_html_end, web_app_js, web_app_js_end
    .global web_style_css, web_style_css_end
web_index_html:
    .incbin "web/index.html"
web_index_html_end:
web_app_js:
    .incbin "web/app.js"
web_app_js_end:
web_style_css:
    .incbin "web/style.css"
web_style_css_end:
    .section .note.GNU-stack,"",@progbits
